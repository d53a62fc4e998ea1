"""Policy checks of validation: one stable reason per bundle, the failing transaction marked, an audit row.

Each rejection is also looked up with the on-call runbook's query for it, unchanged.
"""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from audit.models import AuditAction, AuditLog
from bundles.client import encode
from bundles.models import Bundle, Transaction
from bundles.simulator import SENEGAL_TIME_ZONE, one_local_day_window
from bundles.tasks import sweep_received_bundles
from bundles.validation import validate_bundle
from devices.models import Device, DeviceActivity, DeviceStatus
from devices.services import set_device_status
from policies.models import Policy
from reconciliation.models import SyncQueueItem

pytestmark = pytest.mark.django_db


def payments(identity, count, *, start, amount="1500", spacing=timedelta(minutes=1), **fields):
    return [identity.transaction(amount=amount, sender="+221770000001", receiver="+221770000002",
                                 initiated_at=start + i * spacing, **fields) for i in range(count)]


def run_sql(sql, *params):
    with connection.cursor() as cursor:
        cursor.execute(sql, params or None)
        return cursor.fetchall()


def stored(bundle):
    return Bundle.objects.get(bundle_id=bundle["bundle_id"])


def failed_checks(bundle):
    return dict(Transaction.objects.filter(bundle_id=bundle["bundle_id"]).exclude(failed_check="")
                .values_list("local_id", "failed_check"))


def rejection_audit(bundle):
    return AuditLog.objects.get(bundle_id=bundle["bundle_id"], action=AuditAction.BUNDLE_REJECTED)


def activity_count(device_id):
    return sum(DeviceActivity.objects.filter(device_id=device_id).values_list("tx_count", flat=True))


@pytest.mark.parametrize("offset_minutes,direction", [(180, "ahead of"), (-45, "behind")])
def test_clock_skew_rejected(make_device, push, now, offset_minutes, direction):
    device = make_device()
    device_now = now + timedelta(minutes=offset_minutes)
    bundle = device.seal(payments(device, 2, start=device_now - timedelta(minutes=30)), created_at=device_now)

    push(device, bundle, sent_at=device_now)

    row = stored(bundle)
    assert row.status == "rejected"
    assert row.reason_code == "clock_skew"
    assert direction in row.rejected_reason
    assert run_sql("SELECT bundle_id FROM offline_tx_bundles WHERE rejected_reason LIKE '%clock skew%'") == [
        (bundle["bundle_id"],)]
    assert rejection_audit(bundle).new_values == {"status": "rejected", "reason_code": "clock_skew"}
    assert activity_count(device.device_id) == 0
    assert not SyncQueueItem.objects.exists()


def test_clock_skew_uses_policy_override(make_device, push, now):
    Policy.objects.filter(country="SN").update(max_clock_skew_minutes=240)
    device = make_device()
    device_now = now + timedelta(hours=3)
    bundle = device.seal(payments(device, 2, start=device_now - timedelta(minutes=30)), created_at=device_now)

    push(device, bundle, sent_at=device_now)

    assert stored(bundle).status == "accepted"


def test_offline_for_days_is_too_old_not_skew(make_device, push, now):
    device = make_device()
    Device.objects.filter(device_id=device.device_id).update(created_at=now - timedelta(days=30))
    sealed = now - timedelta(days=10)
    bundle = device.seal(payments(device, 3, start=sealed - timedelta(hours=1)), created_at=sealed)

    push(device, bundle)

    row = stored(bundle)
    assert row.status == "rejected"
    assert row.reason_code == "bundle_too_old"
    assert "hours before it was received; the limit is 72 hours" in row.rejected_reason
    assert run_sql("SELECT bundle_id FROM offline_tx_bundles WHERE rejected_reason LIKE '%too old%'") == [
        (bundle["bundle_id"],)]
    assert run_sql("SELECT bundle_id FROM offline_tx_bundles WHERE rejected_reason LIKE '%clock skew%'") == []
    assert failed_checks(bundle) == {tx["local_id"]: "bundle_too_old" for tx in bundle["transactions"]}
    assert rejection_audit(bundle).details["failed_checks"] == failed_checks(bundle)


def test_one_old_transaction_marks_only_it(make_device, push, now):
    device = make_device()
    Device.objects.filter(device_id=device.device_id).update(created_at=now - timedelta(days=30))
    transactions = payments(device, 3, start=now - timedelta(hours=2))
    transactions[1]["initiated_at"] = (now - timedelta(hours=80)).strftime("%Y-%m-%dT%H:%M:%SZ")
    bundle = device.seal(transactions, created_at=now - timedelta(minutes=5))

    push(device, bundle)

    row = stored(bundle)
    assert row.reason_code == "bundle_too_old"
    assert transactions[1]["local_id"] in row.rejected_reason
    assert failed_checks(bundle) == {transactions[1]["local_id"]: "bundle_too_old"}
    assert set(Transaction.objects.filter(bundle=row).values_list("status", flat=True)) == {"rejected"}


def test_transaction_after_sent_at_is_tampering(make_device, push, now):
    device = make_device()
    transactions = payments(device, 3, start=now - timedelta(hours=1))
    transactions[2]["initiated_at"] = (now + timedelta(minutes=10)).strftime("%Y-%m-%dT%H:%M:%SZ")
    bundle = device.seal(transactions, created_at=now - timedelta(minutes=1))

    push(device, bundle, sent_at=now)

    row = stored(bundle)
    assert row.reason_code == "suspected_clock_tampering"
    assert "after sent_at" in row.rejected_reason
    assert failed_checks(bundle) == {transactions[2]["local_id"]: "suspected_clock_tampering"}
    assert run_sql("SELECT bundle_id FROM offline_tx_bundles "
                   "WHERE rejected_reason LIKE '%suspected_clock_tampering%'") == [(bundle["bundle_id"],)]


def test_transaction_before_registration_is_tampering(make_device, push, now):
    device = make_device()
    transactions = payments(device, 2, start=now - timedelta(hours=1))
    transactions[0]["initiated_at"] = (now - timedelta(hours=60)).strftime("%Y-%m-%dT%H:%M:%SZ")
    bundle = device.seal(transactions, created_at=now - timedelta(minutes=1))

    push(device, bundle)

    row = stored(bundle)
    assert row.reason_code == "suspected_clock_tampering"
    assert "before the device was registered" in row.rejected_reason
    assert failed_checks(bundle) == {transactions[0]["local_id"]: "suspected_clock_tampering"}


@pytest.mark.parametrize("field,value,reason", [
    ("currency", "XAF", "currency_not_allowed"),
    ("type", "loan", "type_not_allowed"),
    ("amount", "150000", "amount_over_limit"),
])
def test_transaction_rule_rejects_bundle(make_device, push, now, field, value, reason):
    device = make_device()
    transactions = payments(device, 3, start=now - timedelta(hours=1))
    transactions[1][field] = value
    bundle = device.seal(transactions, created_at=now - timedelta(minutes=1))

    push(device, bundle)

    row = stored(bundle)
    assert row.status == "rejected"
    assert row.reason_code == reason
    assert row.rejected_reason.startswith(f"{reason}: ")
    assert value in row.rejected_reason
    assert failed_checks(bundle) == {transactions[1]["local_id"]: reason}
    assert rejection_audit(bundle).reason == row.rejected_reason


def test_local_id_repeated_in_bundle_rejects(make_device, push, now):
    device = make_device()
    transactions = payments(device, 3, start=now - timedelta(hours=1))
    transactions[2]["local_id"] = transactions[0]["local_id"]
    bundle = device.seal(transactions, created_at=now - timedelta(minutes=1))

    push(device, bundle)

    row = stored(bundle)
    assert row.reason_code == "duplicate_transaction"
    assert "appears 2 times in this bundle" in row.rejected_reason
    positions = dict(Transaction.objects.filter(bundle=row).values_list("position", "failed_check"))
    assert positions == {0: "", 1: "", 2: "duplicate_transaction"}


def test_earlier_local_id_marked_duplicate(make_device, push, now):
    device = make_device()
    first_payments = payments(device, 3, start=now - timedelta(hours=1))
    first = device.seal(first_payments, created_at=now - timedelta(minutes=5))
    push(device, first)
    repeated = dict(first_payments[1])
    second = device.seal([repeated, *payments(device, 2, start=now - timedelta(minutes=30))],
                         created_at=now - timedelta(minutes=1))

    push(device, second)

    row = stored(second)
    assert row.status == "accepted"
    duplicate = Transaction.objects.get(bundle=row, local_id=repeated["local_id"])
    assert duplicate.status == "duplicate"
    assert duplicate.failed_check == "duplicate_transaction"
    assert first["bundle_id"] in duplicate.failure_reason
    assert Transaction.objects.filter(bundle=row, status="accepted").count() == 2
    assert activity_count(device.device_id) == 5
    accepted = AuditLog.objects.get(bundle_id=second["bundle_id"], action=AuditAction.BUNDLE_ACCEPTED)
    assert accepted.details["duplicates"] == {repeated["local_id"]: first["bundle_id"]}


def test_duplicate_lookup_joins_no_bundles(make_device, push, now):
    # With a join, stale statistics let PostgreSQL scan every bundle in an activity status
    # and probe its transactions. A subquery per matching row keeps the (device_id,
    # local_id) index in front, so the lookup must not join the bundles table.
    device = make_device()
    first_payments = payments(device, 2, start=now - timedelta(hours=1))
    first = device.seal(first_payments, created_at=now - timedelta(minutes=5))
    push(device, first)
    second = device.seal([dict(first_payments[0]), *payments(device, 1, start=now - timedelta(minutes=30))],
                         created_at=now - timedelta(minutes=1))

    with CaptureQueriesContext(connection) as queries:
        push(device, second)

    lookups = [query["sql"] for query in queries.captured_queries
               if query["sql"].startswith('SELECT "offline_transactions"."local_id" AS "local_id"')
               and '"offline_transactions"."local_id" IN (' in query["sql"]]
    assert len(lookups) == 1
    assert "JOIN" not in lookups[0]
    assert Transaction.objects.get(bundle=stored(second), local_id=first_payments[0]["local_id"]).status == "duplicate"


def test_all_duplicates_rejects_bundle(make_device, push, now):
    device = make_device()
    transactions = payments(device, 2, start=now - timedelta(hours=1))
    first = device.seal(transactions, created_at=now - timedelta(minutes=5))
    push(device, first)
    copy = device.seal([dict(tx) for tx in transactions], created_at=now - timedelta(minutes=1))

    push(device, copy)

    row = stored(copy)
    assert row.status == "rejected"
    assert row.reason_code == "duplicate_transaction"
    assert set(Transaction.objects.filter(bundle=row).values_list("status", flat=True)) == {"duplicate"}
    assert activity_count(device.device_id) == 2


def test_rejected_bundle_does_not_hold_local_ids(make_device, push, now):
    device = make_device()
    transactions = payments(device, 2, start=now - timedelta(hours=1))
    transactions[1]["currency"] = "XAF"
    first = device.seal(transactions, created_at=now - timedelta(minutes=5))
    push(device, first)
    transactions[1]["currency"] = "XOF"
    retry = device.seal(transactions, created_at=now - timedelta(minutes=1))

    push(device, retry)

    assert stored(first).status == "rejected"
    assert stored(retry).status == "accepted"
    assert failed_checks(retry) == {}


def test_daily_count_limit_exceeded(make_device, push, now):
    device = make_device()
    start, end = one_local_day_window(now, SENEGAL_TIME_ZONE)
    spacing = (end - start) / 60
    first = device.seal(payments(device, 30, start=start, spacing=spacing), created_at=start + 30 * spacing)
    push(device, first)
    second_payments = payments(device, 30, start=start + 30 * spacing, spacing=spacing)
    second = device.seal(second_payments, created_at=end)

    push(device, second)

    assert stored(first).status == "accepted"
    row = stored(second)
    assert row.status == "rejected"
    assert row.reason_code == "daily_limit_exceeded"
    assert "51 transactions (limit 50)" in row.rejected_reason
    assert run_sql("SELECT bundle_id FROM offline_tx_bundles WHERE rejected_reason LIKE '%daily limit exceeded%'"
                   ) == [(second["bundle_id"],)]
    assert failed_checks(second) == {tx["local_id"]: "daily_limit_exceeded" for tx in second_payments[20:]}
    day = start.astimezone(SENEGAL_TIME_ZONE).date()
    assert run_sql("SELECT tx_count, total_amount FROM offline_device_activity WHERE device_id = %s "
                   "AND activity_date = %s", device.device_id, day) == [(30, Decimal("45000.00"))]


def test_daily_amount_limit_exceeded(make_device, push, now):
    Policy.objects.filter(country="SN").update(max_amount_per_device_per_day=Decimal("100000"))
    device = make_device()
    start, end = one_local_day_window(now, SENEGAL_TIME_ZONE)
    first = device.seal(payments(device, 1, start=start, amount="60000"), created_at=end - timedelta(minutes=2))
    push(device, first)
    second = device.seal(payments(device, 1, start=start + timedelta(minutes=1), amount="50000"), created_at=end)

    push(device, second)

    row = stored(second)
    assert row.reason_code == "daily_limit_exceeded"
    assert "110000 XOF (limit 100000)" in row.rejected_reason
    assert activity_count(device.device_id) == 1


def test_daily_limit_uses_policy_time_zone(make_device, push, now):
    """Payments on both sides of local midnight count against two days."""
    Policy.objects.filter(country="SN").update(max_offline_per_device_per_day=2)
    device = make_device()
    Device.objects.filter(device_id=device.device_id).update(created_at=now - timedelta(days=30))
    today = now.astimezone(SENEGAL_TIME_ZONE).replace(hour=0, minute=0, second=0, microsecond=0)
    midnight = today - timedelta(days=1)
    transactions = payments(device, 2, start=midnight - timedelta(minutes=10)) + payments(
        device, 2, start=midnight + timedelta(minutes=1))
    bundle = device.seal(transactions, created_at=now - timedelta(minutes=1))

    push(device, bundle)

    assert stored(bundle).status == "accepted"
    days = dict(DeviceActivity.objects.filter(device_id=device.device_id).values_list("activity_date", "tx_count"))
    assert days == {(midnight - timedelta(days=1)).date(): 2, midnight.date(): 2}


def test_country_without_policy_rejected(make_device, sample_bundle, push):
    device = make_device(country="GH")
    bundle = sample_bundle(device)

    push(device, bundle)

    row = stored(bundle)
    assert row.status == "rejected"
    assert row.reason_code == "no_policy"
    assert "no offline policy for country GH" in row.rejected_reason


def test_device_blocked_before_validation(make_device, sample_bundle, api_client, now,
                                          django_capture_on_commit_callbacks):
    device = make_device()
    bundle = sample_bundle(device)
    body = device.sign_for_push(bundle, sent_at=now)

    with django_capture_on_commit_callbacks() as callbacks:
        response = api_client.generic("POST", "/offline/bundles", encode(body), content_type="application/json")
    assert response.json()["status"] == "received"
    set_device_status(acting_user=None, device_id=device.device_id, new_status=DeviceStatus.BLOCKED,
                      reason="stolen terminal", action=AuditAction.DEVICE_BLOCKED)
    for callback in callbacks:
        callback()

    row = stored(bundle)
    assert row.status == "rejected"
    assert row.reason_code == "device_blocked"
    assert rejection_audit(bundle).reason == row.rejected_reason


def test_redelivered_task_changes_nothing(make_device, sample_bundle, push):
    device = make_device()
    bundle = sample_bundle(device, 3)
    push(device, bundle)
    row = stored(bundle)

    assert validate_bundle(row.pk) is None

    assert stored(bundle).validation_attempts == 1
    assert AuditLog.objects.filter(bundle_id=row.bundle_id, action=AuditAction.BUNDLE_ACCEPTED).count() == 1
    assert SyncQueueItem.objects.filter(bundle=row).count() == 1
    assert activity_count(device.device_id) == 3


def test_validation_queries_independent_of_size(make_device, api_client, now,
                                                django_capture_on_commit_callbacks):
    bundle_pks = {}
    for count in (2, 40):
        device = make_device(f"QUERY_COUNT_{count}")
        # A sender per device, because one sender on two devices raises the fraud score.
        transactions = [device.transaction(amount="1500", sender=f"+2217700000{count:02d}", receiver="+221770000099",
                                           initiated_at=now - timedelta(hours=1) + timedelta(minutes=i))
                        for i in range(count)]
        bundle = device.seal(transactions, created_at=now - timedelta(minutes=1))
        with django_capture_on_commit_callbacks():  # Received, not validated yet.
            api_client.generic("POST", "/offline/bundles", encode(device.sign_for_push(bundle, sent_at=now)),
                               content_type="application/json")
        bundle_pks[count] = stored(bundle).pk

    query_counts = {}
    for count, bundle_pk in bundle_pks.items():
        with CaptureQueriesContext(connection) as queries:
            assert validate_bundle(bundle_pk) == "accepted"
        query_counts[count] = len(queries)

    assert query_counts[2] == query_counts[40]
    for tx in Transaction.objects.filter(bundle__pk=bundle_pks[40]):
        assert tx.status == "accepted"
        assert tx.failed_check == ""
        assert tx.sira_score is not None
        assert isinstance(tx.sira_reasons, list)


def test_sweep_validates_lost_message(make_device, sample_bundle, api_client, now,
                                      django_capture_on_commit_callbacks):
    device = make_device()
    bundle = sample_bundle(device)

    with django_capture_on_commit_callbacks():  # The callbacks are dropped: the message is lost.
        api_client.generic("POST", "/offline/bundles", encode(device.sign_for_push(bundle, sent_at=now)),
                           content_type="application/json")
    assert stored(bundle).status == "received"
    assert sweep_received_bundles() == 0

    assert sweep_received_bundles(older_than_seconds=0) == 1

    assert stored(bundle).status == "accepted"
    assert sweep_received_bundles(older_than_seconds=0) == 0


def test_deleted_device_rejected_as_unknown(make_device, sample_bundle, api_client, now,
                                            django_capture_on_commit_callbacks):
    device = make_device()
    bundle = sample_bundle(device)

    with django_capture_on_commit_callbacks() as callbacks:
        api_client.generic("POST", "/offline/bundles", encode(device.sign_for_push(bundle, sent_at=now)),
                           content_type="application/json")
    Device.objects.filter(device_id=device.device_id).delete()
    for callback in callbacks:
        callback()

    row = stored(bundle)
    assert row.status == "rejected"
    assert row.reason_code == "unknown_device"
    assert row.device_id == device.device_id
    assert rejection_audit(bundle).device_id == device.device_id


def test_release_gives_back_activity(make_device, push, now):
    from devices.activity import release_bundle_activity

    device = make_device()
    first_payments = payments(device, 3, start=now - timedelta(hours=1))
    push(device, device.seal(first_payments, created_at=now - timedelta(minutes=5)))
    second = device.seal([dict(first_payments[0]), *payments(device, 2, start=now - timedelta(minutes=30))],
                         created_at=now - timedelta(minutes=1))
    push(device, second)
    assert activity_count(device.device_id) == 5

    row = stored(second)
    release_bundle_activity(row, list(row.transactions.all()), "Africa/Dakar")

    # The duplicate never counted, so only the two new payments are given back.
    assert activity_count(device.device_id) == 3


def test_sweep_in_beat_schedule(settings):
    entry = settings.CELERY_BEAT_SCHEDULE["sweep-received-bundles"]

    assert entry["task"] == sweep_received_bundles.name
    assert entry["schedule"] == 60.0
