"""Bad input at volume: seeded mutations of signed bundles, and schemathesis on the schema.

Every response must be below 500, and no response may leave a partial row: a 4xx stores
nothing, a 202 stores exactly the bundle with all its transactions, a 200 stores no
new bundle or transaction.
"""

import http.client
import json
import os
import logging
import time
from contextlib import contextmanager
from collections import Counter
from urllib.parse import urlsplit

import pytest
from django.db import connection
from django.test import Client, override_settings

from bundles.models import Bundle, Transaction
from devices.models import Device, KeyAlgorithm
from tests.battery import report
from tests.mutators import BundleMutator

IN_PROCESS_CASES = int(os.environ.get("MUTATION_CASES", 10_000))
HTTP_CASES = 300


def row_marks() -> tuple[int, int, int]:
    """Return the highest id in the bundle, transaction and audit tables.

    Ids only grow, so any row that a request left behind raises one of them; reading the
    primary key index stays fast however many rows the battery has stored.
    """
    with connection.cursor() as cursor:
        cursor.execute("SELECT (SELECT coalesce(max(id), 0) FROM offline_tx_bundles),"
                       " (SELECT coalesce(max(id), 0) FROM offline_transactions),"
                       " (SELECT coalesce(max(id), 0) FROM offline_audit_logs)")
        return cursor.fetchone()


def stored_transactions(bundle_id: str) -> tuple[int, int] | None:
    """Return (tx_count, transaction rows) of a stored bundle, or None if it is missing."""
    bundle = Bundle.objects.filter(bundle_id=bundle_id).values_list("tx_count", flat=True).first()
    if bundle is None:
        return None
    return bundle, Transaction.objects.filter(bundle_id=bundle_id).count()


class Tally:
    """Count responses by status class and every row invariant that a request broke."""

    def __init__(self):
        self.codes = Counter()
        self.partial_rows = 0
        self.failures: list[str] = []
        self.cases = 0

    def check(self, case, status: int, body: bytes, before: tuple, after: tuple) -> None:
        self.cases += 1
        self.codes[f"{status // 100}xx"] += 1
        new_bundle, new_transactions, new_audit = (after[i] > before[i] for i in range(3))

        if status >= 500:
            self.failures.append(f"{case.mutator}: {status} {body[:300]!r}")
            return

        if status == 202:
            bundle_id = json.loads(body)["bundle_id"]
            expected = (len(case.transactions), len(case.transactions))
            stored_ok = new_bundle and new_transactions and stored_transactions(bundle_id) == expected
        elif status == 200:
            stored_ok = not new_bundle and not new_transactions
        else:
            stored_ok = not (new_bundle or new_transactions or new_audit)
        if not stored_ok:
            self.partial_rows += 1
            self.failures.append(f"{case.mutator}: {status} left rows {before} -> {after}")

    def report(self, name: str, seconds: float) -> None:
        report(name, cases=self.cases, **{key: self.codes[key] for key in ("2xx", "4xx", "5xx")},
               partial_rows=self.partial_rows, seconds=round(seconds))


@pytest.fixture
def devices(make_device):
    identities = [make_device("FZ_ED", algorithm=KeyAlgorithm.ED25519),
                  make_device("FZ_ES", algorithm=KeyAlgorithm.ES256),
                  make_device("FZ_ESRAW", algorithm=KeyAlgorithm.ES256, raw_es256=True),
                  make_device("FZ_BLOCKED"),
                  make_device("FZ_UNKNOWN", register=False)]
    Device.objects.filter(device_id="FZ_BLOCKED").update(status="blocked")
    return identities


@contextmanager
def quiet_request_logs():
    """Keep only errors from the loggers that note every rejected request, for speed."""
    loggers = [logging.getLogger(name) for name in ("django.request", "bundles", "devices", "molam_offline")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


# Throttle counters in the database cache cost several queries per request; the throttles
# have their own tests, and the quick-start rates never trip here anyway.
@override_settings(CACHES={"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}})
@pytest.mark.django_db
def test_mutated_bundles_in_process(devices, now):
    # A 500 must be counted like any other response, not raised into the test.
    client = Client(raise_request_exception=False)
    tally = Tally()
    started = time.monotonic()
    marks = row_marks()

    with quiet_request_logs():
        for case in BundleMutator(seed=20261204, devices=devices, now=now, prefix="fz").cases(IN_PROCESS_CASES):
            response = client.generic("POST", "/offline/bundles", case.body, content_type=case.content_type)
            before, marks = marks, row_marks()
            error = getattr(response, "exc_info", None)
            body = repr(error[1]).encode() if error else response.content

            tally.check(case, response.status_code, body, before, marks)

    tally.report("Mutated bundles, in process", time.monotonic() - started)
    assert tally.cases >= IN_PROCESS_CASES
    assert tally.codes["5xx"] == 0, tally.failures[:20]
    assert tally.partial_rows == 0, tally.failures[:20]
    assert tally.codes["2xx"] > 0
    assert tally.codes["4xx"] > 0


@pytest.mark.django_db(transaction=True)
def test_mutated_bundles_over_http(devices, now, live_server):
    address = urlsplit(live_server.url)
    tally = Tally()
    started = time.monotonic()

    for case in BundleMutator(seed=4242, devices=devices, now=now, prefix="fzh").cases(HTTP_CASES):
        before = row_marks()
        status, body = post_raw(address.hostname, address.port, case.body, case.content_type)
        tally.check(case, status, body, before, row_marks())

    tally.report("Mutated bundles, over HTTP", time.monotonic() - started)
    assert tally.codes["5xx"] == 0, tally.failures[:20]
    assert tally.partial_rows == 0, tally.failures[:20]
    assert Bundle.objects.count() > 0
    assert Transaction.objects.count() > 0


def post_raw(host: str, port: int, body: bytes, content_type: str) -> tuple[int, bytes]:
    connection_ = http.client.HTTPConnection(host, port, timeout=60)
    try:
        headers = {"Content-Type": content_type} if content_type else {}
        connection_.request("POST", "/offline/bundles", body=body, headers=headers)
        response = connection_.getresponse()
        return response.status, response.read()
    finally:
        connection_.close()


@pytest.mark.django_db
@pytest.mark.parametrize("field,value,code", [
    ("sender", None, "null"),
    ("note", "\udfff", "invalid_character"),
    ("initiated_at", "9999-12-31T23:59:59-01:00", "invalid_timestamp"),
    ("initiated_at", "0001-01-01T00:00:00+01:00", "invalid_timestamp"),
])
def test_storage_breaking_values_are_400(make_device, sample_bundle, push, now, field, value, code):
    device = make_device()
    bundle = sample_bundle(device, 1)
    bundle["transactions"][0][field] = value
    document = device.sign_for_push(bundle, sent_at=now) if field != "note" else dict(
        bundle, sent_at="2026-12-04T10:00:00Z", signature={"alg": "Ed25519", "value": "A" * 86 + "=="})

    response = push(device, None, body=json.dumps(document).encode())

    assert response.status_code == 400
    assert response.json()["errors"][0]["code"] == code
    assert not Bundle.objects.exists()


@pytest.mark.django_db
def test_amount_beyond_storage_is_400(make_device, sample_bundle, push):
    # Amounts have at most 15 integer digits, so that even 500 of them add up to a total
    # that offline_tx_bundles.total_amount (numeric(20, 2)) can store.
    device = make_device()
    bundle = sample_bundle(device, 101, amount="9999999999999999")

    response = push(device, bundle)

    assert response.status_code == 400
    assert response.json()["errors"][0] == {**response.json()["errors"][0], "path": "$.transactions[0].amount",
                                            "code": "invalid_amount"}
    assert not Bundle.objects.exists()
