"""bundle_status and queue_status: the runbook's Steps 1, 2 and 4 in a terminal, with exit codes."""

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command

from bundles.models import BundleStatus
from tests.monitoring_helpers import accept, heartbeat, make_bundles, queue, reject
from tests.processes import run_manage

pytestmark = pytest.mark.django_db


def run(command, *args):
    """Run a command in-process; return its exit code and output."""
    out = StringIO()
    try:
        call_command(command, *args, stdout=out)
        code = 0
    except SystemExit as exit_:
        code = exit_.code
    return code, out.getvalue()


def test_bundle_status_healthy():
    accept(40)
    reject(1, push_attempts=3)
    heartbeat("reconcile@worker-1", age=timedelta(minutes=1))

    code, output = run("bundle_status")

    assert code == 0
    assert "  accepted              40           1.0" in output
    assert "  rejected               1           3.0" in output
    assert "Rejection rate: 2.4% (1 of 41)" in output
    assert "Overall: OK" in output


@pytest.mark.parametrize("accepted, rejected, expected_code, level", [
    (93, 7, 1, "WARNING"),
    (85, 15, 2, "ESCALATION"),
])
def test_bundle_status_rate_thresholds(accepted, rejected, expected_code, level):
    accept(accepted)
    reject(rejected)

    code, output = run("bundle_status")

    assert code == expected_code
    assert f"[{level}]" in output


def test_bundle_status_unknown_reason_escalates():
    accept(30)
    reject(1, "made_up_reason", rejected_reason="made_up_reason: something new")

    code, output = run("bundle_status")

    assert code == 2
    assert "made_up_reason                     1  UNKNOWN: escalate" in output
    assert "made_up_reason: something new" in output  # Step 2's list of rejected bundles


def test_bundle_status_review_backlog_warns():
    make_bundles(11, BundleStatus.QUARANTINED, age=timedelta(hours=5))

    code, output = run("bundle_status")

    assert code == 1
    assert "11 waiting longer than 4h00m" in output


def test_queue_status_healthy():
    queue(accept(3))
    heartbeat("reconcile@worker-1", age=timedelta(minutes=1))

    code, output = run("queue_status")

    assert code == 0
    assert "pending_bundles  3 (alert above 500)" in output
    assert "reconcile@worker-1" in output


def test_queue_status_oldest_over_an_hour():
    queue(accept(1), age=timedelta(minutes=75))

    code, output = run("queue_status")

    assert code == 1
    assert "WARNING: oldest pending bundle waits 1h15m (max 1h00m)" in output


def test_queue_status_size_over_limit(settings):
    settings.MONITORING = {**settings.MONITORING, "QUEUE_SIZE_MAX": 2}
    queue(accept(3))

    code, output = run("queue_status")

    assert code == 1
    assert "3 pending bundles (max 2)" in output


def test_queue_status_stuck_worker_escalates():
    heartbeat("reconcile@worker-1", age=timedelta(minutes=31), error="ledger timed out")

    code, output = run("queue_status")

    assert code == 2
    assert "STUCK: escalate" in output
    assert "last error: ledger timed out" in output


@pytest.mark.slow
def test_exit_code_reaches_the_shell():
    # The test's rows stay uncommitted, so the subprocess reads an empty database.
    healthy = run_manage("queue_status")
    missing = run_manage("diagnose_bundle", "bundle_nope")

    assert healthy.returncode == 0, healthy.stderr
    assert "Overall: OK" in healthy.stdout
    assert missing.returncode == 3
    assert "Bundle 'bundle_nope' not found" in missing.stderr
