"""Device-side bundle building and signing, as a device developer would write it.

Used by the device simulator, the benchmarks and the tests; the server only verifies.
"""

import json
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime, timezone

from devices.keys import generate_private_key, public_key_pem, sign
from devices.models import KeyAlgorithm

from .wire import canonical_bytes


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class DeviceIdentity:
    """A device's id and key pair, as kept on the terminal."""

    device_id: str
    algorithm: str = KeyAlgorithm.ED25519
    raw_es256: bool = False
    private_key: object = None
    next_sequence: int = 1
    next_local_id: int = 1
    country: str = "SN"
    tenant_type: str = "merchant"
    tenant_id: str = ""
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.private_key is None:
            self.private_key = generate_private_key(self.algorithm)
        if not self.tenant_id:
            self.tenant_id = f"tenant_{self.device_id.lower()}"

    @property
    def pubkey_pem(self) -> str:
        return public_key_pem(self.private_key)

    def registration(self) -> dict:
        return {"device_id": self.device_id, "tenant_type": self.tenant_type, "tenant_id": self.tenant_id,
                "pubkey_pem": self.pubkey_pem, "country": self.country}

    def transaction(self, *, amount: str, sender: str, receiver: str, initiated_at: datetime, type: str = "p2p",
                    currency: str = "XOF", note: str | None = None, local_id: str | None = None) -> dict:
        if local_id is None:
            local_id = f"tx-{self.next_local_id:06d}"
            self.next_local_id += 1
        tx = {"local_id": local_id, "type": type, "amount": amount, "currency": currency, "sender": sender,
              "receiver": receiver, "initiated_at": rfc3339(initiated_at)}
        if note:
            tx["note"] = note
        return tx

    def seal(self, transactions: list[dict], *, created_at: datetime, bundle_id: str | None = None,
             sequence: int | None = None) -> dict:
        """Build an unsigned bundle; `sign_for_push` adds sent_at and the signature."""
        if sequence is None:
            sequence = self.next_sequence
            self.next_sequence += 1
        bundle_id = bundle_id or f"bundle_{self.device_id.lower()}_{sequence:06d}"
        return {"bundle_id": bundle_id, "device_id": self.device_id, "sequence": sequence,
                "created_at": rfc3339(created_at), "transactions": transactions}

    def sign_for_push(self, bundle: dict, *, sent_at: datetime, key=None) -> dict:
        """Return the bundle with `sent_at` and a fresh signature, as the device does on every push."""
        document = {key_: value for key_, value in bundle.items() if key_ != "signature"}
        document["sent_at"] = rfc3339(sent_at)
        value = sign(key or self.private_key, canonical_bytes(document), raw_es256=self.raw_es256)
        document["signature"] = {"alg": str(self.algorithm), "value": value}
        return document


def encode(document: dict) -> bytes:
    return json.dumps(document, ensure_ascii=False).encode("utf-8")


def post_json(url: str, body: bytes, *, token: str | None = None, timeout: float = 30) -> tuple[int, dict]:
    """POST a JSON body and return the status code and decoded response body (4xx and 5xx included)."""
    request = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "application/json"})
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        payload = error.read()
        try:
            return error.code, json.loads(payload or b"{}")
        except ValueError:
            return error.code, {"detail": payload.decode("utf-8", "replace")[:500]}
