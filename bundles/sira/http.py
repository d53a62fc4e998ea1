"""A scorer that calls an external SIRA HTTP service, with a short timeout.

Request (POST SIRA_URL, JSON): {"bundle_id", "device_id", "country", "transactions": [
{"local_id", "type", "amount", "currency", "sender", "receiver", "initiated_at"}]}.
Expected response: {"scores": [{"local_id": str, "score": int 0-100,
"reasons": [{"code": str, "points": int, "detail": str}]}]}, one entry per transaction.
Any other response, an HTTP error or a timeout raises ScorerUnavailable.
"""

import json
import urllib.error
import urllib.request
from typing import Sequence

from django.conf import settings

from .features import BundleContext, TransactionLike
from .reasons import plain_amount
from .scorer import MAX_SCORE, Score, Scorer, ScorerUnavailable

# The max bytes read from a response. A larger response is rejected as malformed.
MAX_RESPONSE_BYTES = 1024 * 1024


class HttpScorer(Scorer):
    name = "http"

    def __init__(self, url: str | None = None, timeout: float | None = None):
        self.url = url or settings.SIRA_URL
        self.timeout = timeout if timeout is not None else settings.SIRA_TIMEOUT_SECONDS
        if not self.url:
            raise ScorerUnavailable("SIRA_URL is empty")

    def score(self, context: BundleContext, transactions: Sequence[TransactionLike], policy) -> list[Score]:
        body = json.dumps({
            "bundle_id": context.bundle_id,
            "device_id": context.device_id,
            "country": policy.country,
            "transactions": [{"local_id": tx.local_id, "type": getattr(tx, "type", ""),
                              "amount": plain_amount(tx.amount), "currency": getattr(tx, "currency", ""),
                              "sender": tx.sender, "receiver": tx.receiver,
                              "initiated_at": tx.initiated_at.isoformat()}
                             for tx in transactions],
        }).encode("utf-8")
        request = urllib.request.Request(self.url, data=body, method="POST",
                                         headers={"Content-Type": "application/json"})
        # NOTE: the timeout applies to the connection and to each read, not to the whole
        # request, so a server that sends a byte at a time can take longer.
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                payload = response.read(MAX_RESPONSE_BYTES + 1)
        except urllib.error.HTTPError as error:
            raise ScorerUnavailable(f"SIRA service responded with HTTP {error.code}") from error
        except TimeoutError as error:
            raise ScorerUnavailable(f"SIRA service timed out after {self.timeout} seconds") from error
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            if isinstance(reason, TimeoutError):
                raise ScorerUnavailable(f"SIRA service timed out after {self.timeout} seconds") from error
            raise ScorerUnavailable(f"SIRA service request failed: {reason}") from error

        if len(payload) > MAX_RESPONSE_BYTES:
            raise ScorerUnavailable(f"SIRA response is larger than {MAX_RESPONSE_BYTES} bytes")
        return parse_answer(payload, [tx.local_id for tx in transactions])


def parse_answer(payload: bytes, local_ids: list[str]) -> list[Score]:
    """Validate the service's response and return one Score per local_id, in bundle order."""
    try:
        document = json.loads(payload)
    except (UnicodeDecodeError, ValueError) as error:
        raise ScorerUnavailable(f"SIRA response is not valid JSON: {error}") from error

    entries = document.get("scores") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise ScorerUnavailable("SIRA response has no 'scores' list")

    by_local_id = {}
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict) or not isinstance(entry.get("local_id"), str):
            raise ScorerUnavailable(f"SIRA response scores[{index}] has no string 'local_id'")
        value = entry.get("score")
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_SCORE:
            raise ScorerUnavailable(f"SIRA response scores[{index}].score is not an integer from 0 to {MAX_SCORE}")
        by_local_id[entry["local_id"]] = Score(local_id=entry["local_id"], score=value,
                                               reasons=_parse_reasons(entry.get("reasons", []), index))

    missing = [local_id for local_id in local_ids if local_id not in by_local_id]
    if missing:
        raise ScorerUnavailable(f"SIRA response has no score for {', '.join(missing[:5])}")
    return [by_local_id[local_id] for local_id in local_ids]


def _parse_reasons(items, index: int) -> list[dict]:
    if not isinstance(items, list):
        raise ScorerUnavailable(f"SIRA response scores[{index}].reasons is not a list")
    reasons = []
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("code"), str):
            raise ScorerUnavailable(f"SIRA response scores[{index}].reasons has an entry without a string 'code'")
        points = item.get("points", 0)
        if isinstance(points, bool) or not isinstance(points, int):
            raise ScorerUnavailable(f"SIRA response scores[{index}].reasons has non-integer points")
        reasons.append({"code": item["code"][:64], "points": points, "detail": str(item.get("detail", ""))[:500]})
    return reasons
