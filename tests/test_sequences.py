"""Sequence tracking: missing bundle numbers and numbers that two bundles claim."""

from datetime import timedelta

import pytest

from audit.models import AuditAction, AuditLog
from bundles.models import Bundle, SequenceAnomaly
from devices.models import Device, DeviceActivity

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("no_fraud_scoring")]


def device_row(identity):
    return Device.objects.get(device_id=identity.device_id)


def open_gaps(identity):
    return sorted(SequenceAnomaly.objects.filter(device_id=identity.device_id, kind="gap", resolved_at__isnull=True)
                  .values_list("sequence", flat=True))


def test_in_order_bundles_leave_no_gap(make_device, sample_bundle, push):
    device = make_device()
    for _ in range(3):
        push(device, sample_bundle(device))

    row = device_row(device)
    assert row.max_sequence_seen == 3
    assert row.missing_sequence_count == 0
    assert not SequenceAnomaly.objects.exists()


def test_gap_recorded_then_filled(make_device, sample_bundle, push):
    device = make_device()
    push(device, sample_bundle(device, sequence=1))
    late = sample_bundle(device, sequence=2)

    push(device, sample_bundle(device, sequence=4))

    assert open_gaps(device) == [2, 3]
    assert device_row(device).missing_sequence_count == 2
    gap_audit = AuditLog.objects.get(action=AuditAction.SEQUENCE_GAP)
    assert gap_audit.details == {"first_missing": 2, "last_missing": 3, "missing_count": 2, "gap_rows_created": 2}

    push(device, late)

    assert open_gaps(device) == [3]
    assert SequenceAnomaly.objects.get(sequence=2).resolved_at is not None
    assert device_row(device).missing_sequence_count == 1
    assert device_row(device).max_sequence_seen == 4


def test_huge_jump_caps_gap_rows(make_device, sample_bundle, push, settings):
    settings.OFFLINE = {**settings.OFFLINE, "MAX_SEQUENCE_GAP_ROWS": 5}
    device = make_device()

    push(device, sample_bundle(device, sequence=1001))

    assert open_gaps(device) == [1, 2, 3, 4, 5]
    assert device_row(device).missing_sequence_count == 1000
    gap_audit = AuditLog.objects.get(action=AuditAction.SEQUENCE_GAP)
    assert gap_audit.details["missing_count"] == 1000
    assert gap_audit.details["gap_rows_created"] == 5

    push(device, sample_bundle(device, sequence=700))

    assert device_row(device).missing_sequence_count == 999


def test_reused_number_quarantines_later_bundle(make_device, sample_bundle, push):
    device = make_device()
    first = sample_bundle(device, sequence=7)
    push(device, first)
    clone = sample_bundle(device, sequence=7, bundle_id="bundle_from_clone")

    push(device, clone)

    assert Bundle.objects.get(bundle_id=first["bundle_id"]).status == "accepted"
    row = Bundle.objects.get(bundle_id="bundle_from_clone")
    assert row.status == "quarantined"
    assert row.reason_code == "sequence_conflict"
    assert first["bundle_id"] in row.rejected_reason
    anomaly = SequenceAnomaly.objects.get(kind="conflict")
    assert anomaly.sequence == 7
    assert anomaly.bundle_ids == [first["bundle_id"], "bundle_from_clone"]
    assert device_row(device).key_conflict_detected_at is not None
    conflict_audit = AuditLog.objects.get(action=AuditAction.SEQUENCE_CONFLICT)
    assert conflict_audit.bundle_id == "bundle_from_clone"
    assert AuditLog.objects.filter(bundle_id="bundle_from_clone", action=AuditAction.BUNDLE_QUARANTINED).exists()
    # A quarantined bundle counts against the daily limits until an operator decides.
    assert sum(DeviceActivity.objects.values_list("tx_count", flat=True)) == 4


def test_bad_signature_cannot_claim_number(make_device, sample_bundle, push):
    from bundles.client import DeviceIdentity

    device = make_device()
    push(device, sample_bundle(device, sequence=3, bundle_id="bundle_forged"),
         key=DeviceIdentity(device_id="attacker").private_key)

    genuine = sample_bundle(device, sequence=3)
    push(device, genuine)

    assert Bundle.objects.get(bundle_id=genuine["bundle_id"]).status == "accepted"
    assert not SequenceAnomaly.objects.filter(kind="conflict").exists()


def test_conflict_does_not_hide_policy_rejection(make_device, sample_bundle, push, now):
    device = make_device()
    push(device, sample_bundle(device, sequence=2))
    skewed = now + timedelta(hours=2)
    clone = sample_bundle(device, sequence=2, bundle_id="bundle_skewed_clone", created_at=skewed,
                          start=skewed - timedelta(minutes=30))

    push(device, clone, sent_at=skewed)

    row = Bundle.objects.get(bundle_id="bundle_skewed_clone")
    assert row.status == "rejected"
    assert row.reason_code == "clock_skew"
    assert SequenceAnomaly.objects.filter(kind="conflict", sequence=2).exists()


def test_device_admin_shows_gaps_and_conflicts(make_device, sample_bundle, push, make_user, client):
    device = make_device()
    push(device, sample_bundle(device, sequence=3))
    push(device, sample_bundle(device, sequence=3, bundle_id="bundle_clone_3"))
    client.force_login(make_user("root", superuser=True))

    page = client.get(f"/admin/devices/device/{device_row(device).pk}/change/").content.decode()

    assert "Missing sequence number" in page
    assert "Two bundles with one sequence number" in page
    assert "bundle_clone_3" in page
