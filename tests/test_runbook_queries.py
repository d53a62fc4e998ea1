"""Every diagnosis query of the on-call runbook, run unchanged against our schema.

The data is written with the ORM the way the product writes it; each query must find the
rows it is meant to find.
"""

from datetime import date, timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.utils import timezone

from bundles.models import Bundle, Transaction
from devices.models import Device, DeviceActivity
from reconciliation.models import SyncQueueItem

pytestmark = pytest.mark.django_db


def make_bundle(bundle_id, device_id, status, *, reason_code="", rejected_reason=None, push_attempts=1, txs=()):
    now = timezone.now()
    bundle = Bundle.objects.create(
        bundle_id=bundle_id, device_id=device_id, country="SN", sequence=1, status=status, reason_code=reason_code,
        rejected_reason=rejected_reason, push_attempts=push_attempts, device_created_at=now, device_sent_at=now,
        signature_alg="Ed25519", signature_value="x", content_hash="0" * 64, payload={}, tx_count=len(txs))
    for position, (amount, score) in enumerate(txs):
        Transaction.objects.create(bundle=bundle, device_id=device_id, position=position, local_id=f"tx-{position}",
                                   type="p2p", amount=Decimal(amount), currency="XOF", sender="+221770000001",
                                   receiver="+221770000002", initiated_at=now - timedelta(hours=2),
                                   sira_score=score)
    return bundle


@pytest.fixture
def runbook_data(db):
    device = Device.objects.create(device_id="DEVICE_XXX", tenant_type="merchant", tenant_id="merchant_123",
                                   country="SN", pubkey_pem="-", key_alg="Ed25519", last_seen_at=timezone.now())
    make_bundle("bundle_ok", "DEVICE_XXX", "accepted", txs=[("1500", 5)])
    make_bundle("bundle_xxx", "DEVICE_XXX", "rejected", reason_code="bundle_too_old", push_attempts=3,
                rejected_reason="bundle_too_old: bundle too old (created 240 hours ago; max 72)",
                txs=[("1500", None), ("2500", None)])
    make_bundle("bundle_skew", "DEVICE_XXX", "rejected", reason_code="clock_skew",
                rejected_reason="clock_skew: clock skew too large (sent_at is 180 minutes ahead; max 15)")
    make_bundle("bundle_q", "DEVICE_XXX", "quarantined", txs=[("99000", 91), ("99000", 85)])
    SyncQueueItem.objects.create(bundle=Bundle.objects.get(bundle_id="bundle_ok"))
    DeviceActivity.objects.create(device=device, activity_date=date.today(), total_amount=Decimal("4000"),
                                  tx_count=2)
    from audit.services import record
    record("bundle_rejected", bundle_id="bundle_xxx", device_id="DEVICE_XXX", reason="too old")


def run(sql):
    with connection.cursor() as cursor:
        cursor.execute(sql)
        return cursor.fetchall()


def test_step1_bundle_status(runbook_data):
    rows = run("""
SELECT
  status,
  COUNT(*) as count,
  AVG(push_attempts) as avg_attempts
FROM offline_tx_bundles
WHERE created_at > NOW() - INTERVAL '1 hour'
GROUP BY status;
""")
    by_status = {status: (count, avg) for status, count, avg in rows}
    assert by_status["accepted"][0] == 1
    assert by_status["rejected"][0] == 2
    assert by_status["rejected"][1] == Decimal(2)
    assert by_status["quarantined"][0] == 1


def test_step2_rejected_bundles(runbook_data):
    rows = run("""
SELECT
  bundle_id,
  device_id,
  rejected_reason,
  push_attempts,
  created_at
FROM offline_tx_bundles
WHERE status = 'rejected'
  AND created_at > NOW() - INTERVAL '24 hours'
ORDER BY created_at DESC
LIMIT 20;
""")
    assert {row[0] for row in rows} == {"bundle_xxx", "bundle_skew"}


def test_step3_audit_logs(runbook_data):
    rows = run("""
SELECT
  action,
  details,
  created_at
FROM offline_audit_logs
WHERE bundle_id = 'bundle_xxx'
ORDER BY created_at DESC;
""")
    assert [row[0] for row in rows] == ["bundle_rejected"]


def test_step4_sync_queue(runbook_data):
    rows = run("""
SELECT
  COUNT(*) as pending_bundles,
  MIN(created_at) as oldest_bundle
FROM offline_sync_queue
WHERE status = 'pending';
""")
    assert rows[0][0] == 1
    assert rows[0][1] is not None


def test_issue1_device_registration(runbook_data):
    rows = run("""
SELECT
  device_id,
  status,
  created_at,
  last_seen_at
FROM offline_devices
WHERE device_id = 'DEVICE_XXX';
""")
    assert rows[0][:2] == ("DEVICE_XXX", "active")


def test_issue2_clock_skew(runbook_data):
    rows = run("""
SELECT
  bundle_id,
  device_id,
  rejected_reason
FROM offline_tx_bundles
WHERE rejected_reason LIKE '%clock skew%';
""")
    assert [row[0] for row in rows] == ["bundle_skew"]


def test_issue3_too_old(runbook_data):
    rows = run("""
SELECT
  bundle_id,
  device_id,
  created_at,
  rejected_reason
FROM offline_tx_bundles
WHERE rejected_reason LIKE '%too old%'
ORDER BY created_at DESC;
""")
    assert [row[0] for row in rows] == ["bundle_xxx"]


def test_issue3_transaction_age(runbook_data):
    rows = run("""
   SELECT
     local_id,
     amount,
     initiated_at,
     EXTRACT(EPOCH FROM (NOW() - initiated_at::timestamp))/3600 as age_hours
   FROM offline_transactions
   WHERE bundle_id = 'bundle_xxx';
""")
    assert len(rows) == 2
    assert all(row[3] > 1 for row in rows)


def test_issue4_device_activity(runbook_data):
    rows = run("""
SELECT
  device_id,
  activity_date,
  total_amount,
  tx_count
FROM offline_device_activity
WHERE device_id = 'DEVICE_XXX'
  AND activity_date >= CURRENT_DATE - INTERVAL '7 days'
ORDER BY activity_date DESC;
""")
    assert rows[0][0] == "DEVICE_XXX"
    assert rows[0][3] == 2


def test_issue4_policy(runbook_data):
    rows = run("SELECT * FROM offline_policies WHERE country = 'SN';")
    assert len(rows) == 1


def test_issue5_quarantine(runbook_data):
    rows = run("""
SELECT
  b.bundle_id,
  b.device_id,
  COUNT(t.id) as tx_count,
  SUM(t.amount) as total_amount,
  AVG(t.sira_score) as avg_sira_score
FROM offline_tx_bundles b
JOIN offline_transactions t ON t.bundle_id = b.bundle_id
WHERE b.status = 'quarantined'
GROUP BY b.bundle_id, b.device_id;
""")
    assert rows == [("bundle_q", "DEVICE_XXX", 2, Decimal("198000.00"), Decimal(88))]


def test_issue5_transaction_details(runbook_data):
    rows = run("""
   SELECT
     local_id,
     type,
     amount,
     sender,
     receiver,
     sira_score,
     initiated_at
   FROM offline_transactions
   WHERE bundle_id = 'bundle_xxx'
   ORDER BY sira_score DESC;
""")
    assert len(rows) == 2


def test_resolution_inserts_work(runbook_data):
    """The runbook's manual INSERTs still run, so an old habit cannot break the schema's defaults."""
    with connection.cursor() as cursor:
        cursor.execute("""
   INSERT INTO offline_audit_logs (bundle_id, actor, action, details)
   VALUES (
     'bundle_xxx',
     'ops_user_email@molam.co',
     'manual_approval',
     '{"reason": "False positive - verified with merchant"}'
   );""")
        cursor.execute("UPDATE offline_sync_queue SET status = 'done'")
        cursor.execute("INSERT INTO offline_sync_queue (bundle_id, priority) VALUES ('bundle_xxx', 1);")
        cursor.execute("SELECT status, attempts FROM offline_sync_queue WHERE bundle_id = 'bundle_xxx'")
        assert cursor.fetchall() == [("pending", 0)]


def test_audit_log_is_append_only(runbook_data):
    from django.db import ProgrammingError, transaction

    with pytest.raises(ProgrammingError), transaction.atomic():
        run("UPDATE offline_audit_logs SET actor = 'someone else'")
    with pytest.raises(ProgrammingError), transaction.atomic():
        run("DELETE FROM offline_audit_logs")
