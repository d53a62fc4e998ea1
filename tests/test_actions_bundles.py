import threading
from decimal import Decimal

import pytest
from django.core.exceptions import PermissionDenied
from django.db import connection

from audit.models import AuditLog
from bundles import actions
from bundles.client import DeviceIdentity, encode
from bundles.models import Bundle, Transaction
from bundles.services import ingest_bundle
from bundles.wire import parse_bundle
from devices.actions import block_device, replace_device_key
from devices.models import DeviceActivity
from molam_offline.actions import ActionRefused, NotFound
from molam_offline.roles import ENGINEER, FRAUD, OPS
from policies.models import ChangeRequest, Policy
from policies.scoping import grant_country
from reconciliation.models import SyncQueueItem
from tests.backoffice import make_bundle, staff  # noqa: F401  (fixtures)

pytestmark = pytest.mark.django_db


def activity_total(device_id):
    return sum((row.total_amount for row in DeviceActivity.objects.filter(device_id=device_id)), Decimal(0))


def test_approve_queues_with_priority_one_and_audits(staff, make_bundle):
    reviewer = staff("opsuser", OPS)
    bundle = make_bundle(scores=[91, 40])

    outcome = actions.approve_bundle(acting_user=reviewer, bundle_pk=bundle.pk, note="False positive, merchant called")

    assert outcome.approved
    bundle.refresh_from_db()
    assert bundle.status == "accepted"
    assert bundle.rejected_reason is None
    assert bundle.reviewed_by == reviewer
    assert bundle.reconciliation_status == "queued"
    assert list(Transaction.objects.filter(bundle=bundle).values_list("status", flat=True)) == ["accepted"] * 2
    queue = SyncQueueItem.objects.get(bundle=bundle)
    assert queue.priority == 1
    assert queue.status == "pending"
    audit = AuditLog.objects.get(bundle_id=bundle.bundle_id, action="manual_approval")
    assert audit.actor == "opsuser@molam.test"
    assert audit.actor_user == reviewer
    assert audit.reason == "False positive, merchant called"
    assert audit.details["reason"] == "False positive, merchant called"
    assert audit.old_values["status"] == "quarantined"
    assert audit.new_values == {"status": "accepted", "queue_priority": 1}
    assert activity_total(bundle.device_id) == Decimal("4000")


def test_approve_requires_note(staff, make_bundle):
    bundle = make_bundle()
    with pytest.raises(ActionRefused):
        actions.approve_bundle(acting_user=staff("opsuser", OPS), bundle_pk=bundle.pk, note="  ")
    bundle.refresh_from_db()
    assert bundle.status == "quarantined"


def test_second_approval_reports_first_reviewer(staff, make_bundle):
    first, second = staff("first", OPS), staff("second", OPS)
    bundle = make_bundle(status="pending_review")
    actions.approve_bundle(acting_user=first, bundle_pk=bundle.pk, note="checked")

    with pytest.raises(ActionRefused, match="already accepted by first"):
        actions.approve_bundle(acting_user=second, bundle_pk=bundle.pk, note="checked too")

    assert AuditLog.objects.filter(bundle_id=bundle.bundle_id, action="manual_approval").count() == 1
    assert SyncQueueItem.objects.filter(bundle=bundle).count() == 1


def test_approve_without_permission_or_country(staff, make_bundle):
    bundle = make_bundle()
    with pytest.raises(PermissionDenied):
        actions.approve_bundle(acting_user=staff("engineer", ENGINEER), bundle_pk=bundle.pk, note="x")
    with pytest.raises(NotFound):
        actions.approve_bundle(acting_user=staff("ml_ops", OPS, countries=["ML"]), bundle_pk=bundle.pk, note="x")
    bundle.refresh_from_db()
    assert bundle.status == "quarantined"


def test_approve_blocked_device_refused(staff, make_bundle):
    bundle = make_bundle()
    bundle.device.status = "blocked"
    bundle.device.save()
    with pytest.raises(ActionRefused, match="blocked"):
        actions.approve_bundle(acting_user=staff("opsuser", OPS), bundle_pk=bundle.pk, note="x")


def test_reject_releases_daily_totals(staff, make_bundle):
    reviewer = staff("fraudster_hunter", FRAUD)
    bundle = make_bundle(amounts=["1500", "2500"])
    assert activity_total(bundle.device_id) == Decimal("4000")

    actions.reject_bundle(acting_user=reviewer, bundle_pk=bundle.pk, reason_code="confirmed_fraud",
                          note="merchant confirmed the terminal was stolen")

    bundle.refresh_from_db()
    assert bundle.status == "rejected"
    assert bundle.reason_code == "confirmed_fraud"
    assert bundle.rejected_reason == "confirmed_fraud: merchant confirmed the terminal was stolen"
    assert activity_total(bundle.device_id) == Decimal("0")
    assert set(Transaction.objects.filter(bundle=bundle).values_list("status", flat=True)) == {"rejected"}
    audit = AuditLog.objects.get(bundle_id=bundle.bundle_id, action="manual_rejection")
    assert audit.old_values["status"] == "quarantined"
    assert audit.new_values["reason_code"] == "confirmed_fraud"
    assert audit.actor == "fraudster_hunter@molam.test"


def test_reject_reason_other_needs_note(staff, make_bundle):
    bundle = make_bundle()
    with pytest.raises(ActionRefused, match="note"):
        actions.reject_bundle(acting_user=staff("opsuser", OPS), bundle_pk=bundle.pk, reason_code="other")
    with pytest.raises(ActionRefused, match="Invalid reason code"):
        actions.reject_bundle(acting_user=staff("opsuser2", OPS), bundle_pk=bundle.pk, reason_code="because")


def test_reject_reclassifies_system_rejection(staff, make_bundle):
    reviewer = staff("opsuser", OPS)
    bundle = make_bundle(status="rejected", reason_code="clock_skew")

    actions.reject_bundle(acting_user=reviewer, bundle_pk=bundle.pk, reason_code="suspected_clock_tampering")

    bundle.refresh_from_db()
    assert bundle.rejected_reason.startswith("suspected_clock_tampering: ")
    audit = AuditLog.objects.get(bundle_id=bundle.bundle_id, action="manual_rejection")
    assert audit.old_values["reason_code"] == "clock_skew"
    with pytest.raises(ActionRefused, match="already rejected by opsuser"):
        actions.reject_bundle(acting_user=reviewer, bundle_pk=bundle.pk, reason_code="confirmed_fraud")


def test_accept_too_old_bundle(staff, make_bundle):
    reviewer = staff("opsuser", OPS)
    bundle = make_bundle(status="rejected", amounts=["1000", "2000", "3000"],
                         failed_checks=["", "", "amount_over_limit"])
    assert activity_total(bundle.device_id) == Decimal("0")

    actions.accept_too_old_bundle(acting_user=reviewer, bundle_pk=bundle.pk, note="device was offline 10 days")

    bundle.refresh_from_db()
    assert bundle.status == "accepted"
    assert bundle.rejected_reason is None
    statuses = dict(Transaction.objects.filter(bundle=bundle).values_list("position", "status"))
    assert statuses == {0: "accepted", 1: "accepted", 2: "rejected"}
    assert activity_total(bundle.device_id) == Decimal("3000")
    assert SyncQueueItem.objects.get(bundle=bundle).priority == 1
    audit = AuditLog.objects.get(bundle_id=bundle.bundle_id, action="manual_approval")
    assert audit.details["accepted_too_old"] is True


def test_accept_too_old_refuses_other_rejections(staff, make_bundle):
    bundle = make_bundle(status="rejected", reason_code="invalid_signature")
    with pytest.raises(ActionRefused, match="not rejected as too old"):
        actions.accept_too_old_bundle(acting_user=staff("opsuser", OPS), bundle_pk=bundle.pk, note="x")


def test_release_above_threshold_needs_second_reviewer(staff, make_bundle):
    Policy.objects.filter(country="SN").update(four_eyes_amount_threshold=Decimal("3000"))
    first, second = staff("first", OPS), staff("second", FRAUD)
    bundle = make_bundle(amounts=["1500", "2500"])

    outcome = actions.approve_bundle(acting_user=first, bundle_pk=bundle.pk, note="merchant verified")

    assert not outcome.approved
    bundle.refresh_from_db()
    assert bundle.status == "quarantined"
    assert not SyncQueueItem.objects.filter(bundle=bundle).exists()
    with pytest.raises(ActionRefused, match="already waits"):
        actions.approve_bundle(acting_user=second, bundle_pk=bundle.pk, note="me too")

    from policies.actions import approve_change_request

    with pytest.raises(ActionRefused, match="yourself"):
        approve_change_request(acting_user=first, change_request_pk=outcome.change_request.pk, note="ok")
    approve_change_request(acting_user=second, change_request_pk=outcome.change_request.pk, note="ok")

    bundle.refresh_from_db()
    assert bundle.status == "accepted"
    assert SyncQueueItem.objects.get(bundle=bundle).priority == 1
    assert ChangeRequest.objects.get(pk=outcome.change_request.pk).status == "approved"
    actions_logged = list(AuditLog.objects.filter(bundle_id=bundle.bundle_id).order_by("id")
                          .values_list("action", "actor"))
    assert ("change_requested", "first@molam.test") in actions_logged
    assert ("manual_approval", "second@molam.test") in actions_logged
    assert ("change_approved", "second@molam.test") in actions_logged


def test_pending_review_above_threshold_needs_no_second_reviewer(staff, make_bundle):
    Policy.objects.filter(country="SN").update(four_eyes_amount_threshold=Decimal("100"))
    bundle = make_bundle(status="pending_review")
    assert actions.approve_bundle(acting_user=staff("opsuser", OPS), bundle_pk=bundle.pk, note="ok").approved


def test_requeue_after_key_replacement(staff, make_device, sample_bundle, now, pay_admin,
                                       django_capture_on_commit_callbacks):
    engineer = staff("engineer", ENGINEER)
    grant_country(pay_admin, "SN")
    device = make_device("DEVICE_NEWKEY")
    regenerated = DeviceIdentity(device_id="DEVICE_NEWKEY", country="SN")
    document = regenerated.sign_for_push(sample_bundle(regenerated, 2), sent_at=now)
    stored = ingest_bundle(parse_bundle(encode(document))).bundle
    assert stored.reason_code == "invalid_signature"

    with pytest.raises(ActionRefused, match="does not verify"):
        actions.requeue_bundle(acting_user=engineer, bundle_pk=stored.pk, note="new key registered")

    replace_device_key(acting_user=pay_admin, device_id=device.device_id, pubkey_pem=regenerated.pubkey_pem,
                       reason="merchant reset the terminal")
    with django_capture_on_commit_callbacks(execute=True):
        actions.requeue_bundle(acting_user=engineer, bundle_pk=stored.pk, note="new key registered")

    stored.refresh_from_db()
    assert stored.status == "accepted"
    audit = AuditLog.objects.get(bundle_id=stored.bundle_id, action="bundle_requeued")
    assert audit.old_values["reason_code"] == "invalid_signature"
    assert audit.new_values == {"status": "received"}


def test_requeue_refuses_operator_decisions(staff, make_bundle):
    bundle = make_bundle(status="accepted")
    with pytest.raises(ActionRefused, match="Accepted"):
        actions.requeue_bundle(acting_user=staff("engineer", ENGINEER), bundle_pk=bundle.pk, note="x")


@pytest.mark.django_db(transaction=True)
def test_two_reviewers_approve_at_once(staff, make_bundle):
    reviewers = [staff("alice", OPS), staff("bob", OPS)]
    bundle = make_bundle(status="pending_review")
    barrier = threading.Barrier(2)
    outcomes = {}

    def approve(reviewer):
        try:
            barrier.wait(timeout=10)
            actions.approve_bundle(acting_user=reviewer, bundle_pk=bundle.pk, note=f"checked by {reviewer}")
            outcomes[reviewer.username] = "approved"
        except ActionRefused as refusal:
            outcomes[reviewer.username] = refusal.message
        finally:
            connection.close()

    threads = [threading.Thread(target=approve, args=(reviewer,)) for reviewer in reviewers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert sorted(outcomes) == ["alice", "bob"]
    assert list(outcomes.values()).count("approved") == 1
    winner = next(name for name, outcome in outcomes.items() if outcome == "approved")
    loser_message = next(outcome for outcome in outcomes.values() if outcome != "approved")
    assert f"already accepted by {winner}" in loser_message
    assert AuditLog.objects.filter(bundle_id=bundle.bundle_id, action="manual_approval").count() == 1
    assert SyncQueueItem.objects.filter(bundle=bundle).count() == 1
    assert Bundle.objects.get(pk=bundle.pk).reviewed_by.username == winner


@pytest.mark.django_db(transaction=True)
def test_block_and_approve_at_once(staff, make_bundle):
    fraud, reviewer = staff("fraud", FRAUD), staff("ops", OPS)
    bundle = make_bundle(status="pending_review")
    barrier = threading.Barrier(2)
    errors, refusals = [], []

    def run(action):
        try:
            barrier.wait(timeout=10)
            action()
        except ActionRefused as refusal:
            refusals.append(refusal.message)
        except Exception as error:  # a deadlock would surface here
            errors.append(error)
        finally:
            connection.close()

    threads = [
        threading.Thread(target=run, args=(lambda: block_device(acting_user=fraud, device_id=bundle.device_id,
                                                                reason="stolen", quarantine_bundles=True),)),
        threading.Thread(target=run, args=(lambda: actions.approve_bundle(acting_user=reviewer, bundle_pk=bundle.pk,
                                                                          note="ok"),)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    bundle.refresh_from_db()
    if refusals:
        assert bundle.status == "quarantined"
        assert "blocked" in refusals[0]
    else:
        assert bundle.status == "accepted"
    assert bundle.device.status == "blocked"
