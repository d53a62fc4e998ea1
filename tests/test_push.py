import json
import threading
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from django.db import connection

from audit.models import AuditLog
from bundles.client import DeviceIdentity, encode
from bundles.models import Bundle, Transaction
from devices.models import Device, KeyAlgorithm
from reconciliation.models import SyncQueueItem

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("algorithm,raw", [(KeyAlgorithm.ED25519, False), (KeyAlgorithm.ES256, False),
                                           (KeyAlgorithm.ES256, True)])
def test_good_bundle_is_accepted_and_queued(make_device, sample_bundle, push, algorithm, raw):
    device = make_device(algorithm=algorithm, raw_es256=raw)
    bundle = sample_bundle(device, 3)

    response = push(device, bundle)

    assert response.status_code == 202, response.content
    assert response.json()["status"] == "received"
    stored = Bundle.objects.get(bundle_id=bundle["bundle_id"])
    assert stored.status == "accepted"
    assert stored.tx_count == 3
    assert Transaction.objects.filter(bundle=stored, status="accepted").count() == 3
    assert SyncQueueItem.objects.filter(bundle=stored, status="pending").count() == 1
    assert set(AuditLog.objects.filter(bundle_id=stored.bundle_id).values_list("action", flat=True)) == {
        "bundle_received", "bundle_accepted", "queue_enqueued"}


def test_repeat_push_returns_200_and_counts(make_device, sample_bundle, push, now):
    device = make_device()
    bundle = sample_bundle(device)
    assert push(device, bundle).status_code == 202

    response = push(device, bundle, sent_at=now + timedelta(seconds=30))

    assert response.status_code == 200
    assert response.json()["push_attempts"] == 2
    assert response.json()["status"] == "accepted"
    assert Bundle.objects.count() == 1
    assert Transaction.objects.count() == 2


def test_same_bundle_id_other_content_is_409(make_device, sample_bundle, push):
    device = make_device()
    bundle = sample_bundle(device)
    assert push(device, bundle).status_code == 202
    changed = json.loads(json.dumps(bundle))
    changed["transactions"][0]["amount"] = "999999"

    response = push(device, changed)

    assert response.status_code == 409
    assert response.json()["errors"][0]["path"] == "$.bundle_id"
    assert Transaction.objects.get(position=0).amount == 1500


def test_bad_signature_is_stored_rejected(make_device, sample_bundle, push):
    device = make_device()
    bundle = sample_bundle(device)
    other_key = DeviceIdentity(device_id="other").private_key

    response = push(device, bundle, key=other_key)

    assert response.status_code == 202
    assert response.json()["status"] == "rejected"
    assert response.json()["reason_code"] == "invalid_signature"
    assert not SyncQueueItem.objects.exists()
    with connection.cursor() as cursor:
        cursor.execute("SELECT bundle_id FROM offline_tx_bundles WHERE status = 'rejected' "
                       "AND rejected_reason LIKE '%invalid_signature%'")
        assert cursor.fetchall() == [(bundle["bundle_id"],)]


def test_algorithm_mismatch_is_invalid_signature(make_device, sample_bundle, push, now):
    device = make_device(algorithm=KeyAlgorithm.ES256)
    bundle = sample_bundle(device)
    document = device.sign_for_push(bundle, sent_at=now)
    document["signature"]["alg"] = "Ed25519"

    response = push(device, bundle, body=encode(document))

    assert response.json()["reason_code"] == "invalid_signature"


def test_unknown_device_is_stored_rejected(make_device, sample_bundle, push):
    device = make_device(register=False)

    response = push(device, sample_bundle(device))

    assert response.status_code == 202
    assert response.json()["reason_code"] == "unknown_device"
    assert Bundle.objects.get().rejected_reason.startswith("unknown_device")


@pytest.mark.parametrize("status,reason", [("blocked", "device_blocked"), ("inactive", "device_inactive")])
def test_blocked_or_inactive_device_is_rejected(make_device, sample_bundle, push, status, reason):
    device = make_device()
    Device.objects.filter(device_id=device.device_id).update(status=status)

    response = push(device, sample_bundle(device))

    assert response.json()["status"] == "rejected"
    assert response.json()["reason_code"] == reason


def test_repeat_push_with_bad_signature_is_not_counted(make_device, sample_bundle, push):
    device = make_device()
    bundle = sample_bundle(device)
    assert push(device, bundle).status_code == 202

    response = push(device, bundle, key=DeviceIdentity(device_id="other").private_key)

    assert response.status_code == 403
    assert Bundle.objects.get().push_attempts == 1


# Serialized rollback restores the roles that migrations seed, which the flush after an
# earlier transactional test deletes.
@pytest.mark.django_db(transaction=True)
def test_concurrent_pushes_of_one_bundle_store_one_row(make_device, sample_bundle, now):
    from django.test import Client

    device = make_device()
    bundle = sample_bundle(device, 5)
    bodies = [encode(device.sign_for_push(bundle, sent_at=now + timedelta(seconds=i))) for i in range(20)]
    codes = []
    barrier = threading.Barrier(len(bodies))

    def worker(body):
        barrier.wait()
        try:
            codes.append(Client().generic("POST", "/offline/bundles", body,
                                          content_type="application/json").status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(body,)) for body in bodies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(codes) == [200] * 19 + [202]
    stored = Bundle.objects.get()
    assert stored.push_attempts == 20
    assert Transaction.objects.count() == 5
    assert SyncQueueItem.objects.count() == 1


def test_received_audit_row_fields(make_device, sample_bundle, push, now):
    device = make_device()
    bundle = sample_bundle(device, 2)
    country = Device.objects.get(device_id=device.device_id).country
    assert push(device, bundle).status_code == 202
    assert push(device, bundle, sent_at=now + timedelta(seconds=30)).status_code == 200

    stored = Bundle.objects.get(bundle_id=bundle["bundle_id"])
    received = AuditLog.objects.get(action="bundle_received", bundle_id=bundle["bundle_id"])
    assert received.actor == f"device:{device.device_id}"
    assert received.actor_user is None
    assert received.device_id == device.device_id
    assert received.country == country
    assert received.ip_address == "127.0.0.1"
    assert received.details == {"sequence": bundle["sequence"], "tx_count": 2, "signature_alg": "Ed25519"}
    assert (received.old_values, received.new_values, received.reason) == ({}, {}, "")
    assert received.created_at == stored.created_at
    assert AuditLog.objects.filter(action="bundle_repushed", bundle_id=bundle["bundle_id"]).count() == 1


def test_unknown_device_audit_rows(make_device, sample_bundle, push):
    device = make_device(register=False)
    bundle = sample_bundle(device)

    push(device, bundle)

    rows = list(AuditLog.objects.filter(bundle_id=bundle["bundle_id"]).order_by("id"))
    assert [row.action for row in rows] == ["bundle_received", "bundle_rejected"]
    assert rows[0].country == ""
    assert rows[1].reason.startswith("unknown_device")
    assert rows[1].new_values == {"status": "rejected", "reason_code": "unknown_device"}


def test_new_bundle_ingest_query_count(make_device, sample_bundle, now, django_assert_num_queries):
    from bundles.services import ingest_bundle
    from bundles.wire import parse_bundle

    device = make_device()
    body = encode(device.sign_for_push(sample_bundle(device, 3), sent_at=now))

    # The device SELECT, the bundle INSERT with its audit row in one statement and the
    # COPY of the transactions, plus the savepoint and its release that stand in for
    # BEGIN and COMMIT inside the test's transaction.
    with django_assert_num_queries(5):
        result = ingest_bundle(parse_bundle(body), source_ip="127.0.0.1")

    assert result.created
    assert Transaction.objects.filter(bundle_id=result.bundle.bundle_id).count() == 3
    assert AuditLog.objects.filter(bundle_id=result.bundle.bundle_id, action="bundle_received").count() == 1


def test_payload_and_notes_stored_as_pushed(make_device, sample_bundle, push, now):
    # The payload column is filled from the body text, so spacing, key order and escapes
    # in the body must leave the same jsonb value as the parsed document. The transactions
    # are written as COPY text, where a backslash must be escaped.
    device = make_device()
    bundle = sample_bundle(device, 3)
    bundle["transactions"][0]["note"] = "Riz \"25 kg\" \\ Aïda \U0001F600"
    bundle["transactions"][1]["note"] = None
    bundle["transactions"][2]["note"] = "\\N"
    bundle["transactions"][2]["initiated_at"] = "2026-12-04T09:58:00.1234567+01:00"
    document = device.sign_for_push(bundle, sent_at=now)
    body = json.dumps(dict(reversed(document.items())), indent=2, ensure_ascii=True).encode()

    response = push(device, bundle, body=body)

    assert response.status_code == 202, response.content
    assert Bundle.objects.get(bundle_id=bundle["bundle_id"]).payload == document
    stored = Transaction.objects.filter(bundle_id=bundle["bundle_id"]).order_by("position")
    assert [tx.note for tx in stored] == ["Riz \"25 kg\" \\ Aïda \U0001F600", "", "\\N"]
    assert [tx.amount for tx in stored] == [Decimal(tx["amount"]) for tx in bundle["transactions"]]
    assert stored[2].initiated_at == datetime(2026, 12, 4, 8, 58, 0, 123456, tzinfo=timezone.utc)
