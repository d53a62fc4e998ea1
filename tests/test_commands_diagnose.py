"""diagnose_bundle: a bundle's device, policy, audit trail, matching runbook issue and admin action."""

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from bundles.models import Bundle, BundleStatus
from devices.models import DeviceActivity
from molam_offline.monitoring.runbook import ADMIN_ACTIONS, REASON_ISSUES, admin_action_label, issue_for
from tests.monitoring_helpers import accept, make_bundles, queue, reject

pytestmark = pytest.mark.django_db


def diagnose(bundle_id):
    out = StringIO()
    try:
        call_command("diagnose_bundle", bundle_id, stdout=out)
        code = 0
    except SystemExit as exit_:
        code = exit_.code
    return code, out.getvalue()


@pytest.mark.parametrize("reason_code, issue", [
    ("invalid_signature", 1), ("unknown_device", 1), ("device_inactive", 1), ("device_blocked", 1),
    ("clock_skew", 2), ("bundle_too_old", 3), ("daily_limit_exceeded", 4), ("high_fraud_score", 5),
])
def test_reason_codes_map_to_issues(reason_code, issue):
    assert issue_for(status="rejected", reason_code=reason_code).number == issue


def test_quarantine_and_stuck_queue_map_to_issues():
    assert issue_for(status="quarantined", reason_code="").number == 5
    assert issue_for(status="pending_review", reason_code="").number == 5
    assert issue_for(status="accepted", reason_code="", queue_stuck=True).number == 6
    assert issue_for(status="accepted", reason_code="") is None
    assert issue_for(status="rejected", reason_code="duplicate_transaction") is None


def test_every_mapped_issue_names_known_actions():
    from molam_offline.monitoring.runbook import ISSUES

    for issue in ISSUES.values():
        assert issue.actions
        assert set(issue.actions) <= set(ADMIN_ACTIONS)
    assert set(REASON_ISSUES.values()) <= set(ISSUES)


def test_action_label_falls_back_to_default():
    assert admin_action_label("block_device") == "Block device"


def test_action_label_read_from_admin(monkeypatch):
    from django.contrib import admin

    from bundles.admin import BundleAdmin

    @admin.action(description="Approve and queue for the ledger")
    def approve(modeladmin, request, queryset):
        pass

    monkeypatch.setattr(BundleAdmin, "approve", approve, raising=False)

    assert admin_action_label("approve") == "Approve and queue for the ledger"


def test_diagnose_clock_skew(make_device):
    make_device("DEVICE_042")
    bundle = reject(1, "clock_skew", rejected_reason="clock_skew: clock skew too large (180 minutes ahead)")[0]
    from audit.services import record

    record("bundle_rejected", bundle_id=bundle.bundle_id, device_id="DEVICE_042", reason="clock skew too large")

    code, output = diagnose(bundle.bundle_id)

    assert code == 1
    assert "rejected_reason   clock_skew: clock skew too large (180 minutes ahead)" in output
    assert "DEVICE_042  status active" in output
    assert "max bundle age 72 h; max clock skew 15 min" in output
    assert "bundle_rejected" in output  # the audit trail (Step 3)
    assert "Issue 2: Clock skew violation" in output
    assert "admin action: 'Reject' in the admin's Bundles list" in output
    assert "admin action: 'Block device' in the admin's Devices list" in output


def test_diagnose_daily_limit_lists_activity(make_device):
    make_device("DEVICE_042")
    DeviceActivity.objects.create(device_id="DEVICE_042", activity_date=timezone.localdate(), tx_count=51,
                                  total_amount=90000)
    bundle = reject(1, "daily_limit_exceeded")[0]

    code, output = diagnose(bundle.bundle_id)

    assert code == 1
    assert "Issue 4: Daily limit exceeded" in output
    assert "51 transactions  total 90000.00" in output
    assert "max per device per day: 50 transactions" in output


def test_diagnose_unknown_device():
    bundle = reject(1, "unknown_device", device_id="DEVICE_GHOST")[0]

    code, output = diagnose(bundle.bundle_id)

    assert code == 1
    assert "DEVICE_GHOST is not registered: register it with POST /offline/devices" in output
    assert "Issue 1: Invalid device signature" in output


def test_diagnose_quarantined(make_device):
    make_device("DEVICE_042")
    bundle = make_bundles(1, BundleStatus.QUARANTINED, reason_code="high_fraud_score")[0]

    code, output = diagnose(bundle.bundle_id)

    assert code == 1
    assert "Issue 5: Fraud score quarantine (SIRA)" in output
    assert "'Approve' in the admin's Bundles list" in output


def test_diagnose_stuck_in_queue(make_device):
    make_device("DEVICE_042")
    bundle = accept(1)[0]
    queue([bundle], age=timedelta(hours=2))

    code, output = diagnose(bundle.bundle_id)

    assert code == 1
    assert "the reconciliation worker may be stuck" in output
    assert "Issue 6: Reconciliation worker stuck" in output
    assert "'Requeue' in the admin's Bundles list" in output


def test_diagnose_unknown_reason_escalates(make_device):
    make_device("DEVICE_042")
    bundle = reject(1, "made_up_reason")[0]

    code, output = diagnose(bundle.bundle_id)

    assert code == 2
    assert "unknown rejection reason 'made_up_reason': escalate" in output


def test_diagnose_healthy_bundle(make_device):
    make_device("DEVICE_042")
    bundle = accept(1)[0]
    queue([bundle])

    code, output = diagnose(bundle.bundle_id)

    assert code == 0
    assert "Overall: OK" in output
    assert "no runbook issue matches: nothing to resolve" in output


def test_diagnose_missing_bundle():
    with pytest.raises(CommandError, match="Bundle 'bundle_nope' not found") as raised:
        call_command("diagnose_bundle", "bundle_nope")

    assert raised.value.returncode == 3
    assert not Bundle.objects.exists()
