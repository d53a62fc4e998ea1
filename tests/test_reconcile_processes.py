"""Exactly-once posting with real `manage.py reconcile` processes on PostgreSQL: two at once, one killed."""

import os
import signal
import subprocess
import sys
import time
from decimal import Decimal

import pytest
from django.db import connection
from django.db.models import Sum

from bundles.models import Bundle, Transaction
from reconciliation.models import JournalEntry, LedgerAccount, SyncQueueItem
from reconciliation.worker import EXIT_OK, EXIT_PARTIAL
from tests.ledger_helpers import assert_ledger_consistent, fund, make_accepted_bundle
from tests.processes import BASE_DIR, run_manage, stop_process, subprocess_env

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

WALLETS = [f"+2217700001{n:02d}" for n in range(6)]


def start_reconcile(*args, **env) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(BASE_DIR / "manage.py"), "reconcile", *args], cwd=BASE_DIR,
                            env=subprocess_env(**env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def make_bundles(count: int, payments_per_bundle: int = 3) -> None:
    """Queue bundles whose payments cross between the wallets in both directions, so workers contend for locks."""
    for number in range(count):
        payments = []
        for position in range(payments_per_bundle):
            sender = WALLETS[(number + position) % len(WALLETS)]
            receiver = WALLETS[(number * 5 + position + 1) % len(WALLETS)]
            if receiver == sender:
                receiver = WALLETS[(WALLETS.index(sender) + 1) % len(WALLETS)]
            payments.append((f"tx-{position}", sender, receiver, str(100 + number)))
        make_accepted_bundle(f"bundle_{number:03d}", f"DEV_{number:03d}", payments)


def assert_every_transaction_reconciled_once():
    assert not Transaction.objects.filter(bundle__status="accepted", status__in=["accepted", "pending"]).exists()
    assert not SyncQueueItem.objects.exclude(status="done").exists()
    assert JournalEntry.objects.count() == Transaction.objects.filter(status="posted").count()
    for tx in Transaction.objects.filter(status="posted"):
        assert JournalEntry.objects.filter(device_id=tx.device_id, local_id=tx.local_id).count() == 1
    assert_ledger_consistent()


def test_two_processes_post_each_transaction_once():
    # Enough money for most payments, not all: failures must not break exactly-once either.
    fund({wallet: "3000" for wallet in WALLETS})
    make_bundles(40)

    workers = [start_reconcile("--once", "--batch-size", "3", "--worker-name", f"proc{number}",
                               RECONCILE_TEST_BUNDLE_DELAY_SECONDS="0.05") for number in range(2)]
    outputs = []
    for worker in workers:
        output, _ = worker.communicate(timeout=120)
        outputs.append(output)

    for worker, output in zip(workers, outputs):
        assert worker.returncode in (EXIT_OK, EXIT_PARTIAL), output
        assert "deadlock" not in output.lower(), output
    assert_every_transaction_reconciled_once()
    posted_by = {entry.split(":")[0] for entry in JournalEntry.objects.values_list("posted_by", flat=True)}
    assert posted_by == {"proc0", "proc1"}
    assert Bundle.objects.filter(reconciliation_status="queued").count() == 0


def test_killed_worker_leaves_ledger_whole(settings):
    fund({wallet: "100000" for wallet in WALLETS})
    make_bundles(10)
    worker = start_reconcile("--once", "--batch-size", "5", "--worker-name", "victim",
                             RECONCILE_TEST_BUNDLE_DELAY_SECONDS="0.4", RECONCILE_LEASE_SECONDS="10")

    deadline = time.monotonic() + 60
    while SyncQueueItem.objects.filter(status="done").count() < 2:
        assert worker.poll() is None, worker.stdout.read()
        assert time.monotonic() < deadline, "the worker posted nothing within 60 seconds"
        time.sleep(0.05)
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait(timeout=10)
    worker.stdout.close()

    done_before = SyncQueueItem.objects.filter(status="done").count()
    assert 2 <= done_before < 10
    assert SyncQueueItem.objects.filter(status="processing", locked_by__startswith="victim").exists()
    assert JournalEntry.objects.count() == Transaction.objects.filter(status="posted").count() == done_before * 3
    assert_ledger_consistent()

    # Until the lease expires, no other worker takes the killed worker's rows.
    early = run_manage("reconcile", "--once", "--worker-name", "rescuer")
    assert early.returncode == EXIT_OK, early.stdout + early.stderr
    assert SyncQueueItem.objects.filter(status="processing").exists()
    wait_for_leases_to_expire()

    rerun = run_manage("reconcile", "--once", "--batch-size", "5", "--worker-name", "rescuer")

    assert rerun.returncode == EXIT_OK, rerun.stdout + rerun.stderr
    assert_every_transaction_reconciled_once()
    assert Transaction.objects.filter(status="posted").count() == 30
    assert SyncQueueItem.objects.filter(attempts=2).exists()
    total = LedgerAccount.objects.aggregate(balance=Sum("balance"), opening=Sum("opening_balance"))
    assert total["balance"] == total["opening"] == Decimal("600000")


def wait_for_leases_to_expire(timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with connection.cursor() as cursor:
            cursor.execute("SELECT COUNT(*) FROM offline_sync_queue WHERE status = 'processing' "
                           "AND lease_expires_at >= now()")
            if cursor.fetchone()[0] == 0:
                return
        time.sleep(0.2)
    raise AssertionError(f"leases still live after {timeout} seconds")


def test_sigterm_releases_claimed_rows():
    fund({wallet: "100000" for wallet in WALLETS})
    make_bundles(6)
    worker = start_reconcile("--loop", "--batch-size", "6", "--interval", "1", "--worker-name", "polite",
                             RECONCILE_TEST_BUNDLE_DELAY_SECONDS="0.4")
    try:
        deadline = time.monotonic() + 60
        while not SyncQueueItem.objects.filter(status="done").exists():
            assert worker.poll() is None, worker.stdout.read()
            assert time.monotonic() < deadline, "the worker posted nothing within 60 seconds"
            time.sleep(0.05)
        worker.send_signal(signal.SIGTERM)
        output, _ = worker.communicate(timeout=30)
    finally:
        stop_process(worker)

    assert worker.returncode == EXIT_OK, output
    assert not SyncQueueItem.objects.filter(status="processing").exists()
    assert SyncQueueItem.objects.filter(status="pending", attempts=0).exists()
    assert_ledger_consistent()


@pytest.fixture
def local_live_server():
    """A live server of the test database on 127.0.0.1 (the pytest-django default is localhost)."""
    from pytest_django.live_server_helper import LiveServer

    server = LiveServer("127.0.0.1:0")
    yield server
    server.stop()


@pytest.fixture
def reference_data():
    """Recreate the role groups and country policies that migrations seed and a transactional test's flush removes.

    serialized_rollback cannot restore them, because the flush recreates django-guardian's
    anonymous user and loading the serialized copy then violates its unique username.
    """
    import importlib

    from django.apps import apps
    from django.contrib.auth.models import Group, Permission

    from molam_offline.roles import ROLE_PERMISSIONS

    for role, codenames in ROLE_PERMISSIONS.items():
        group, _ = Group.objects.get_or_create(name=role)
        for dotted in codenames:
            app_label, codename = dotted.split(".")
            group.permissions.add(Permission.objects.get(content_type__app_label=app_label, codename=codename))
    importlib.import_module("policies.migrations.0002_seed_policies").seed(apps, None)


def test_demo_data_reconciles_in_batches_of_five(reference_data, local_live_server, pay_admin_token):
    from bundles.simulator import Simulator
    from devices.models import DeviceStatus
    from devices.services import set_device_status
    from molam_offline.management.commands.quickstart import DEMO_OPENING_BALANCES

    fund({number: str(amount) for number, amount in DEMO_OPENING_BALANCES.items()})

    def block(device_id):
        set_device_status(acting_user=None, device_id=device_id, new_status=DeviceStatus.BLOCKED,
                          reason="demo: stolen terminal", action="device_blocked")

    Simulator(local_live_server.url, pay_admin_token, run_id="DEMO").run_all(block)
    queued = SyncQueueItem.objects.filter(status="pending").count()
    assert queued > 5

    result = run_manage("reconcile", "--once", "--batch-size", "5", WORKER_MODE="once")

    assert result.returncode == EXIT_OK, result.stdout + result.stderr
    assert f"{queued} bundles reconciled" in result.stdout
    assert "0 failed" in result.stdout
    assert_every_transaction_reconciled_once()
    assert not Bundle.objects.filter(status="accepted").exclude(reconciliation_status="posted").exists()


def test_worker_mode_and_batch_size_from_environment():
    fund({wallet: "100000" for wallet in WALLETS})
    make_bundles(3)

    result = run_manage("reconcile", WORKER_MODE="once", BATCH_SIZE="2")
    wrong_mode = run_manage("reconcile", WORKER_MODE="forever")

    assert result.returncode == EXIT_OK, result.stdout + result.stderr
    assert "(batch size 2)" in result.stderr
    assert result.stderr.count("claimed 2 queue rows") == 1
    assert result.stderr.count("claimed 1 queue rows") == 1
    assert_every_transaction_reconciled_once()
    assert wrong_mode.returncode == 1
    assert "WORKER_MODE must be 'once' or 'loop', not 'forever'" in wrong_mode.stderr
