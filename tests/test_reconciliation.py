"""Ledger posting, queue outcomes, retries, dead letters and the operator actions, in one process."""

import json
from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth.models import Permission
from django.core.management import CommandError, call_command
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.db.models import F
from django.utils import timezone

from audit.models import AuditLog
from bundles.models import Bundle, Transaction
from reconciliation import worker as worker_module
from reconciliation.models import JournalEntry, LedgerAccount, SyncQueueItem, WorkerHeartbeat
from reconciliation.services import QueueActionError, requeue_queue_item
from reconciliation.worker import EXIT_OK, EXIT_PARTIAL, ReconciliationWorker
from tests.ledger_helpers import assert_ledger_consistent, balance, fund, make_accepted_bundle

pytestmark = pytest.mark.django_db

AMINATA, BOUBA, CHEIKH = "+221770000001", "+221770000002", "+221770000003"


def run_worker(**options):
    return ReconciliationWorker(name="test-worker", **options).run_once()


def test_accepted_bundle_posts_double_entries():
    fund({AMINATA: "10000"})
    make_accepted_bundle("b1", "DEV_A", [("tx-1", AMINATA, BOUBA, "1500"), ("tx-2", AMINATA, CHEIKH, "2500")])

    summary = run_worker()

    assert (summary.bundles, summary.posted, summary.failed, summary.skipped) == (1, 2, 0, 0)
    assert summary.exit_code == EXIT_OK
    assert balance(AMINATA) == Decimal("6000")
    assert balance(BOUBA) == Decimal("1500")
    assert balance(CHEIKH) == Decimal("2500")
    entry = JournalEntry.objects.get(local_id="tx-1")
    assert (entry.debit_account.identifier, entry.credit_account.identifier) == (AMINATA, BOUBA)
    assert entry.amount == Decimal("1500")
    assert set(Transaction.objects.values_list("status", flat=True)) == {"posted"}
    assert Transaction.objects.filter(posted_at__isnull=True).count() == 0
    bundle = Bundle.objects.get(bundle_id="b1")
    assert bundle.reconciliation_status == "posted"
    assert bundle.reconciled_at is not None
    item = SyncQueueItem.objects.get(bundle=bundle)
    assert item.status == "done"
    assert item.outcome["transactions"] == {"tx-1": "posted", "tx-2": "posted"}
    assert AuditLog.objects.filter(bundle_id="b1", action="reconciled").count() == 1
    assert_ledger_consistent()


def test_double_spend_on_two_devices_fails_second():
    fund({AMINATA: "2000"})
    make_accepted_bundle("first", "DEV_A", [("tx-1", AMINATA, BOUBA, "1500")])
    make_accepted_bundle("second", "DEV_B", [("tx-1", AMINATA, CHEIKH, "1500"), ("tx-2", BOUBA, CHEIKH, "0.5")])

    summary = run_worker()

    assert (summary.posted, summary.failed) == (2, 1)
    assert summary.exit_code == EXIT_PARTIAL
    failed = Transaction.objects.get(bundle_id="second", local_id="tx-1")
    assert failed.status == "failed"
    assert failed.failure_reason.startswith("insufficient_funds: sender +221770000001 has 500.00 XOF")
    assert not JournalEntry.objects.filter(bundle_id="second", local_id="tx-1").exists()
    second = Bundle.objects.get(bundle_id="second")
    assert second.reconciliation_status == "partial"
    outcome = SyncQueueItem.objects.get(bundle=second).outcome
    assert outcome["failed"] == 1
    assert outcome["transactions"]["tx-1"].startswith("failed: insufficient_funds")
    exception = AuditLog.objects.get(bundle_id="second", action="reconciliation_exception")
    assert "insufficient_funds" in exception.reason
    assert balance(AMINATA) == Decimal("500")
    assert_ledger_consistent()


def test_unfunded_bundle_is_failed():
    make_accepted_bundle("b1", "DEV_A", [("tx-1", AMINATA, BOUBA, "1500")])

    run_worker()

    assert Bundle.objects.get(bundle_id="b1").reconciliation_status == "failed"
    assert SyncQueueItem.objects.get(bundle_id="b1").status == "done"
    assert not JournalEntry.objects.exists()


def test_rejected_and_duplicate_transactions_skipped():
    fund({AMINATA: "10000"})
    make_accepted_bundle("b1", "DEV_A", [("tx-1", AMINATA, BOUBA, "100"), ("tx-2", AMINATA, BOUBA, "200", "duplicate"),
                                         ("tx-3", AMINATA, BOUBA, "300", "rejected")])

    summary = run_worker()

    assert (summary.posted, summary.skipped) == (1, 2)
    assert Transaction.objects.get(local_id="tx-2").status == "duplicate"
    assert Transaction.objects.get(local_id="tx-3").status == "rejected"
    assert balance(BOUBA) == Decimal("100")


def test_same_local_id_in_two_bundles_posts_once():
    fund({AMINATA: "10000"})
    make_accepted_bundle("b1", "DEV_A", [("tx-1", AMINATA, BOUBA, "100")])
    make_accepted_bundle("b2", "DEV_A", [("tx-1", AMINATA, BOUBA, "100")])

    summary = run_worker()

    assert (summary.posted, summary.skipped) == (1, 1)
    assert JournalEntry.objects.count() == 1
    copy = Transaction.objects.get(bundle_id="b2")
    assert copy.status == "duplicate"
    assert copy.failure_reason.startswith("already_posted")
    assert balance(BOUBA) == Decimal("100")
    assert_ledger_consistent()


def test_entry_posted_meanwhile_falls_back(monkeypatch):
    """Another worker commits the same (device_id, local_id) between the journal check and the INSERT."""
    from reconciliation import ledger

    dior = "+221770000004"
    fund({AMINATA: "10000", CHEIKH: "10000"})
    make_accepted_bundle("b1", "DEV_A", [("tx-1", CHEIKH, dior, "300")], queue=False)
    make_accepted_bundle("b2", "DEV_A", [("tx-1", AMINATA, BOUBA, "100"), ("tx-2", AMINATA, BOUBA, "50")])
    LedgerAccount.objects.create(identifier=dior, currency="XOF")
    real_insert_entries = ledger.insert_entries
    calls = []

    def insert_after_other_worker(entries, bundle):
        # What the other worker's commit leaves: its entry, its balances, its transaction posted.
        calls.append(len(entries))
        other = Transaction.objects.get(bundle_id="b1")
        JournalEntry.objects.create(device_id="DEV_A", local_id="tx-1", transaction=other, bundle_id="b1",
                                    debit_account=LedgerAccount.objects.get(identifier=CHEIKH),
                                    credit_account=LedgerAccount.objects.get(identifier=dior), amount=other.amount,
                                    currency="XOF", posted_by="other-worker")
        LedgerAccount.objects.filter(identifier=CHEIKH).update(balance=F("balance") - other.amount)
        LedgerAccount.objects.filter(identifier=dior).update(balance=F("balance") + other.amount)
        Transaction.objects.filter(pk=other.pk).update(status="posted", posted_at=timezone.now())
        return real_insert_entries(entries, bundle)

    monkeypatch.setattr(ledger, "insert_entries", insert_after_other_worker)
    summary = run_worker()

    assert calls == [2]
    assert (summary.posted, summary.skipped) == (1, 1)
    statuses = dict(Transaction.objects.filter(bundle_id="b2").values_list("local_id", "status"))
    assert statuses == {"tx-1": "duplicate", "tx-2": "posted"}
    assert JournalEntry.objects.filter(bundle_id="b2").count() == 1
    assert balance(AMINATA) == Decimal("9950")
    assert balance(BOUBA) == Decimal("50")
    assert balance(dior) == Decimal("300")
    assert_ledger_consistent()


def test_journal_rejects_second_entry():
    fund({AMINATA: "10000"})
    make_accepted_bundle("b1", "DEV_A", [("tx-1", AMINATA, BOUBA, "100")])
    run_worker()
    entry = JournalEntry.objects.get()
    make_accepted_bundle("b2", "DEV_A", [("tx-1", AMINATA, BOUBA, "100")], queue=False)

    with pytest.raises(IntegrityError), transaction.atomic():
        JournalEntry.objects.create(device_id="DEV_A", local_id="tx-1", transaction=Transaction.objects.get(
            bundle_id="b2"), bundle_id="b2", debit_account=entry.debit_account,
            credit_account=entry.credit_account, amount=Decimal("100"), currency="XOF")


def test_database_rejects_overdraft():
    fund({AMINATA: "100"})

    with pytest.raises(IntegrityError), transaction.atomic():
        LedgerAccount.objects.filter(identifier=AMINATA).update(balance=Decimal("-1"))


def test_same_sender_and_receiver_fails():
    fund({AMINATA: "10000"})
    make_accepted_bundle("b1", "DEV_A", [("tx-1", AMINATA, AMINATA, "100")])

    run_worker()

    tx = Transaction.objects.get()
    assert tx.status == "failed"
    assert tx.failure_reason.startswith("same_account")


def test_runbook_insert_is_claimed_first():
    fund({AMINATA: "10000"})
    make_accepted_bundle("normal", "DEV_A", [("tx-1", AMINATA, BOUBA, "100")])
    make_accepted_bundle("manual", "DEV_B", [("tx-1", AMINATA, BOUBA, "100")], queue=False)
    with connection.cursor() as cursor:
        cursor.execute("INSERT INTO offline_sync_queue (bundle_id, priority) VALUES ('manual', 1)")
    order = []

    ReconciliationWorker(name="test", on_item=lambda item, result: order.append(item.bundle_id)).run_once()

    assert order == ["manual", "normal"]
    assert SyncQueueItem.objects.get(bundle_id="manual").status == "done"


def test_batches_drain_queue():
    fund({AMINATA: "10000"})
    for number in range(7):
        make_accepted_bundle(f"b{number}", f"DEV_{number}", [("tx-1", AMINATA, BOUBA, "10")])

    summary = run_worker(batch_size=3)

    assert summary.bundles == 7
    assert not SyncQueueItem.objects.exclude(status="done").exists()


def test_not_accepted_bundle_is_dead_lettered():
    make_accepted_bundle("q1", "DEV_A", [("tx-1", AMINATA, BOUBA, "100")], status="quarantined")

    summary = run_worker()

    item = SyncQueueItem.objects.get()
    assert item.status == "dead"
    assert "is quarantined; only accepted bundles are posted" in item.last_error
    assert summary.dead_lettered == 1
    assert summary.exit_code == EXIT_PARTIAL
    assert AuditLog.objects.filter(bundle_id="q1", action="queue_dead_lettered").count() == 1


def test_error_retries_then_dead_letters(monkeypatch, settings):
    settings.RECONCILIATION = {**settings.RECONCILIATION, "MAX_ATTEMPTS": 2}
    fund({AMINATA: "10000"})
    make_accepted_bundle("b1", "DEV_A", [("tx-1", AMINATA, BOUBA, "100")])

    def broken(bundle, *, worker):
        Transaction.objects.filter(bundle=bundle).update(status="posted")  # Must be rolled back.
        raise RuntimeError("ledger host unreachable")

    monkeypatch.setattr(worker_module, "post_bundle_transactions", broken)
    first = run_worker()

    item = SyncQueueItem.objects.get()
    assert first.bundles_retrying == 1
    assert (item.status, item.attempts) == ("failed", 1)
    assert item.last_error == "RuntimeError: ledger host unreachable"
    assert item.available_at > timezone.now() + timedelta(seconds=50)
    assert Transaction.objects.get().status == "accepted"
    SyncQueueItem.objects.update(available_at=timezone.now())

    second = run_worker()

    item.refresh_from_db()
    assert second.dead_lettered == 1
    assert (item.status, item.attempts) == ("dead", 2)
    assert Bundle.objects.get().reconciliation_status == "failed"
    assert WorkerHeartbeat.objects.get(worker_name="test-worker").last_error.startswith("b1: RuntimeError")


def test_failed_row_waits_for_retry_delay(monkeypatch):
    fund({AMINATA: "10000"})
    make_accepted_bundle("b1", "DEV_A", [("tx-1", AMINATA, BOUBA, "100")])
    monkeypatch.setattr(worker_module, "post_bundle_transactions", lambda bundle, worker: 1 / 0)
    run_worker()
    monkeypatch.undo()

    summary = run_worker()

    assert summary.bundles == 0
    assert SyncQueueItem.objects.get().status == "failed"


def test_requeue_dead_row_posts_it(make_user):
    fund({AMINATA: "10000"})
    make_accepted_bundle("b1", "DEV_A", [("tx-1", AMINATA, BOUBA, "100")])
    item = SyncQueueItem.objects.get()
    SyncQueueItem.objects.filter(pk=item.pk).update(status="dead", attempts=5, last_error="boom")
    Bundle.objects.update(reconciliation_status="failed")
    operator = make_user("ops1", role="ops")

    requeued = requeue_queue_item(acting_user=operator, item_id=item.pk, reason="database fixed")

    assert (requeued.status, requeued.attempts) == ("pending", 0)
    assert Bundle.objects.get().reconciliation_status == "queued"
    audit = AuditLog.objects.get(action="bundle_requeued")
    assert audit.actor == "ops1@molam.test"
    assert audit.old_values == {"queue_status": "dead", "attempts": 5, "last_error": "boom"}
    assert audit.reason == "database fixed"
    with pytest.raises(QueueActionError, match="only dead or failed rows"):
        requeue_queue_item(acting_user=operator, item_id=item.pk)
    assert run_worker().posted == 1


def test_requeue_rejects_live_duplicate_and_unknown(make_user):
    make_accepted_bundle("b1", "DEV_A", [("tx-1", AMINATA, BOUBA, "100")])
    dead = SyncQueueItem.objects.get()
    SyncQueueItem.objects.filter(pk=dead.pk).update(status="dead")
    SyncQueueItem.objects.create(bundle_id="b1")

    with pytest.raises(QueueActionError, match="already has another"):
        requeue_queue_item(acting_user=None, item_id=dead.pk)
    with pytest.raises(QueueActionError, match="not found"):
        requeue_queue_item(acting_user=None, item_id=999999)
    assert not AuditLog.objects.filter(action="bundle_requeued").exists()


def test_expired_lease_is_reclaimed():
    fund({AMINATA: "10000"})
    make_accepted_bundle("b1", "DEV_A", [("tx-1", AMINATA, BOUBA, "100")])
    SyncQueueItem.objects.update(status="processing", locked_by="dead-worker", attempts=1,
                                 lease_expires_at=timezone.now() - timedelta(seconds=1))

    summary = run_worker()

    item = SyncQueueItem.objects.get()
    assert summary.posted == 1
    assert (item.status, item.attempts) == ("done", 2)


def test_live_lease_is_not_claimed():
    make_accepted_bundle("b1", "DEV_A", [("tx-1", AMINATA, BOUBA, "100")])
    SyncQueueItem.objects.update(status="processing", locked_by="busy-worker",
                                 lease_expires_at=timezone.now() + timedelta(minutes=5))

    assert run_worker().bundles == 0


def test_expired_lease_on_last_attempt_dead_letters():
    fund({AMINATA: "10000"})
    make_accepted_bundle("b1", "DEV_A", [("tx-1", AMINATA, BOUBA, "100")])
    make_accepted_bundle("b2", "DEV_B", [("tx-1", AMINATA, BOUBA, "100")])
    SyncQueueItem.objects.filter(bundle_id="b1").update(status="processing", locked_by="crashing-worker",
                                                        attempts=5, priority=1,
                                                        lease_expires_at=timezone.now() - timedelta(seconds=1))

    summary = run_worker(batch_size=1)

    item = SyncQueueItem.objects.get(bundle_id="b1")
    assert item.status == "dead"
    assert "lease expired after 5 attempts" in item.last_error
    assert summary.dead_lettered == 1
    assert SyncQueueItem.objects.get(bundle_id="b2").status == "done"


def test_lease_lost_to_other_worker_skips_bundle():
    fund({AMINATA: "10000"})
    make_accepted_bundle("b1", "DEV_A", [("tx-1", AMINATA, BOUBA, "100")])
    worker = ReconciliationWorker(name="slow")
    summary = worker_module.RunSummary()
    [item] = worker.claim_batch(summary)
    SyncQueueItem.objects.update(locked_by="faster-worker")

    worker.process_item(item, summary)

    assert summary.lease_lost == 1
    assert not JournalEntry.objects.exists()


def test_dry_run_changes_nothing():
    fund({AMINATA: "10000"})
    make_accepted_bundle("b1", "DEV_A", [("tx-1", AMINATA, BOUBA, "100"), ("tx-2", CHEIKH, BOUBA, "100")])
    accounts_before = LedgerAccount.objects.count()

    summary = run_worker(dry_run=True)

    assert (summary.posted, summary.failed) == (1, 1)
    assert not JournalEntry.objects.exists()
    assert LedgerAccount.objects.count() == accounts_before
    assert SyncQueueItem.objects.get().status == "pending"
    assert Transaction.objects.filter(status="accepted").count() == 2
    assert not WorkerHeartbeat.objects.exists()


def test_heartbeat_records_success():
    run_worker()

    beat = WorkerHeartbeat.objects.get(worker_name="test-worker")
    assert beat.last_run_at is not None
    assert beat.last_success_at is not None
    assert beat.last_error == ""


def test_bundle_option_processes_one_bundle():
    fund({AMINATA: "10000"})
    make_accepted_bundle("b1", "DEV_A", [("tx-1", AMINATA, BOUBA, "100")])
    make_accepted_bundle("b2", "DEV_B", [("tx-1", AMINATA, BOUBA, "100")])

    call_command("reconcile", "--bundle", "b2", "--worker-name", "cli")

    assert SyncQueueItem.objects.get(bundle_id="b2").status == "done"
    assert SyncQueueItem.objects.get(bundle_id="b1").status == "pending"


def test_reconcile_command_exit_code_partial():
    make_accepted_bundle("b1", "DEV_A", [("tx-1", AMINATA, BOUBA, "100")])

    with pytest.raises(SystemExit) as exit_info:
        call_command("reconcile", "--once", "--batch-size", "5")

    assert exit_info.value.code == EXIT_PARTIAL


def test_load_opening_balances_csv_and_json(tmp_path):
    csv_file = tmp_path / "balances.csv"
    csv_file.write_text(f"account,currency,amount\n{AMINATA},XOF,5000\n{BOUBA},xof,0\n")
    json_file = tmp_path / "balances.json"
    json_file.write_text(json.dumps([{"account": AMINATA, "currency": "XOF", "amount": "7000"},
                                     {"account": AMINATA, "currency": "EUR", "amount": 12.5}]))

    call_command("load_opening_balances", str(csv_file))
    call_command("load_opening_balances", str(csv_file))
    call_command("load_opening_balances", str(json_file))

    aminata = LedgerAccount.objects.get(identifier=AMINATA, currency="XOF")
    assert (aminata.opening_balance, aminata.balance) == (Decimal("7000"), Decimal("7000"))
    assert balance(AMINATA, "EUR") == Decimal("12.5")
    assert balance(BOUBA) == Decimal("0")
    assert AuditLog.objects.filter(action="opening_balance_set").count() == 3


def test_opening_balance_change_keeps_entries():
    fund({AMINATA: "10000"})
    make_accepted_bundle("b1", "DEV_A", [("tx-1", AMINATA, BOUBA, "4000")])
    run_worker()

    fund({AMINATA: "5000"})

    assert balance(AMINATA) == Decimal("1000")
    assert_ledger_consistent()
    with pytest.raises(ValueError, match="would make its balance negative"):
        fund({AMINATA: "3000"})


@pytest.mark.parametrize("content,message", [
    ("account,amount\nX,1\n", "missing currency"),
    ("account,currency,amount\nX,XOF,-1\n", "must be zero or more"),
    ("account,currency,amount\nX,XOF,1.001\n", "at most 2 decimals"),
    ("account,currency,amount\nX,XOF,abc\n", "not a decimal number"),
    ("account,currency,amount\nX,XO1,1\n", "ISO 4217"),
    ("account,currency,amount\n,XOF,1\n", "account is missing"),
    ("account,currency,amount\nX,XOF,1\nX,XOF,2\n", "more than once"),
])
def test_load_opening_balances_rejects_bad_rows(tmp_path, content, message):
    path = tmp_path / "balances.csv"
    path.write_text(content)

    with pytest.raises(CommandError, match=message):
        call_command("load_opening_balances", str(path))

    assert not LedgerAccount.objects.exists()


def test_admin_pages_and_requeue_action(client, make_user, django_assert_max_num_queries):
    admin_user = make_user("root", superuser=True)
    fund({AMINATA: "10000"})
    for number in range(5):
        make_accepted_bundle(f"b{number}", f"DEV_{number}", [("tx-1", AMINATA, BOUBA, "10")])
    run_worker()
    make_accepted_bundle("dead1", "DEV_X", [("tx-1", AMINATA, BOUBA, "10")])
    SyncQueueItem.objects.filter(bundle_id="dead1").update(status="dead", last_error="boom")
    client.force_login(admin_user)

    for url in ["/admin/reconciliation/syncqueueitem/", "/admin/reconciliation/deadletter/",
                "/admin/reconciliation/ledgeraccount/", "/admin/reconciliation/journalentry/",
                "/admin/reconciliation/workerheartbeat/", "/admin/reconciliation/syncqueueitem/?exceptions=yes"]:
        with django_assert_max_num_queries(12):
            response = client.get(url)
        assert response.status_code == 200, url
    dead_page = client.get("/admin/reconciliation/deadletter/").content.decode()
    assert "dead1" in dead_page
    assert "b0" not in dead_page

    item = SyncQueueItem.objects.get(bundle_id="dead1")
    response = client.post("/admin/reconciliation/deadletter/", {"action": "requeue_selected",
                                                                  "_selected_action": [item.pk]})

    assert response.status_code == 302
    item.refresh_from_db()
    assert item.status == "pending"
    assert AuditLog.objects.get(action="bundle_requeued").actor == "root@molam.test"


def test_requeue_action_needs_permission(client, make_user):
    make_accepted_bundle("dead1", "DEV_X", [("tx-1", AMINATA, BOUBA, "10")])
    SyncQueueItem.objects.update(status="dead")
    fraud_user = make_user("fraud1", role="fraud")
    fraud_user.user_permissions.add(Permission.objects.get(codename="view_syncqueueitem"))
    client.force_login(fraud_user)

    client.post("/admin/reconciliation/syncqueueitem/", {"action": "requeue_selected",
                                                         "_selected_action": [SyncQueueItem.objects.get().pk]})

    assert SyncQueueItem.objects.get().status == "dead"


def test_beat_task_posts_queue(settings):
    from molam_offline.celery import app
    from reconciliation.tasks import reconcile_sync_queue

    fund({AMINATA: "10000"})
    make_accepted_bundle("b1", "DEV_A", [("tx-1", AMINATA, BOUBA, "100")])
    entry = settings.CELERY_BEAT_SCHEDULE["reconcile-sync-queue"]

    counts = reconcile_sync_queue()

    assert entry["task"] in app.tasks
    assert entry["task"] == reconcile_sync_queue.name
    assert counts["posted"] == 1
    assert WorkerHeartbeat.objects.get().worker_name.startswith("celery@")


def test_quick_start_periodic_round_reconciles():
    from molam_offline.periodic import run_periodic_once

    fund({AMINATA: "10000"})
    make_accepted_bundle("b1", "DEV_A", [("tx-1", AMINATA, BOUBA, "100")])

    run_periodic_once()

    assert SyncQueueItem.objects.get().status == "done"
    assert balance(BOUBA) == Decimal("100")


def test_ops_and_engineers_see_ledger():
    from django.contrib.auth.models import Group

    from molam_offline.roles import ENGINEER, FRAUD, OPS

    for role in (OPS, ENGINEER):
        codenames = set(Group.objects.get(name=role).permissions.values_list("codename", flat=True))
        assert {"view_ledgeraccount", "view_journalentry", "view_deadletter", "view_workerheartbeat"} <= codenames
    assert not Group.objects.get(name=FRAUD).permissions.filter(codename="view_ledgeraccount").exists()


def test_second_run_keeps_partial_status():
    fund({AMINATA: "1000"})
    make_accepted_bundle("b1", "DEV_A", [("tx-1", AMINATA, BOUBA, "600"), ("tx-2", AMINATA, BOUBA, "600")])
    run_worker()
    with connection.cursor() as cursor:
        cursor.execute("INSERT INTO offline_sync_queue (bundle_id, priority) VALUES ('b1', 1)")

    summary = run_worker()

    assert (summary.bundles, summary.posted, summary.skipped) == (1, 0, 2)
    assert Bundle.objects.get().reconciliation_status == "partial"
    assert JournalEntry.objects.count() == 1


def test_journal_is_append_only():
    fund({AMINATA: "1000"})
    make_accepted_bundle("b1", "DEV_A", [("tx-1", AMINATA, BOUBA, "600")])
    run_worker()

    with pytest.raises(DatabaseError, match="Cannot update"), transaction.atomic():
        JournalEntry.objects.update(amount=Decimal("1"))
    with pytest.raises(DatabaseError, match="Cannot delete"), transaction.atomic():
        JournalEntry.objects.all().delete()
    with pytest.raises(DatabaseError, match="Cannot delete"), transaction.atomic():
        LedgerAccount.objects.filter(identifier=BOUBA)._raw_delete(connection.alias)
