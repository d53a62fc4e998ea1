from decimal import Decimal

import pytest
from django.core.exceptions import PermissionDenied

from audit.models import AuditLog
from bundles.client import DeviceIdentity
from bundles.models import Bundle
from devices import actions
from devices.models import Device, DeviceActivity
from molam_offline.actions import ActionRefused, NotFound
from molam_offline.roles import FRAUD, OPS, PAY_ADMIN
from tests.backoffice import make_bundle, staff  # noqa: F401  (fixtures)

pytestmark = pytest.mark.django_db


def test_block_quarantines_waiting_bundles(staff, make_bundle):
    fraud = staff("fraud", FRAUD)
    pending = make_bundle(status="pending_review")
    received = make_bundle(status="received", validated=False)
    accepted = make_bundle(status="accepted")

    outcome = actions.block_device(acting_user=fraud, device_id="DEV_SN", reason="cloned terminal",
                                   quarantine_bundles=True)

    assert outcome.device.status == "blocked"
    assert sorted(outcome.quarantined_bundle_ids) == sorted([pending.bundle_id, received.bundle_id])
    statuses = dict(Bundle.objects.values_list("bundle_id", "status"))
    assert statuses == {pending.bundle_id: "quarantined", received.bundle_id: "quarantined",
                        accepted.bundle_id: "accepted"}
    assert Device.objects.get(device_id="DEV_SN").status_reason == "cloned terminal"
    block_row = AuditLog.objects.get(device_id="DEV_SN", action="device_blocked")
    assert block_row.actor == "fraud@molam.test"
    assert block_row.old_values == {"status": "active"}
    assert block_row.new_values == {"status": "blocked"}
    assert AuditLog.objects.filter(action="bundle_quarantined", device_id="DEV_SN").count() == 2
    # The received bundle now counts in the daily totals too: 3 bundles of 4000.
    assert sum(DeviceActivity.objects.values_list("total_amount", flat=True)) == Decimal("12000")


def test_quarantined_unvalidated_bundle_must_be_requeued(staff, make_bundle):
    fraud, reviewer = staff("fraud", FRAUD), staff("ops", OPS)
    received = make_bundle(status="received", validated=False)
    actions.block_device(acting_user=fraud, device_id="DEV_SN", reason="stolen", quarantine_bundles=True)
    actions.reactivate_device(acting_user=staff("payadmin2", PAY_ADMIN), device_id="DEV_SN", reason="found")

    from bundles.actions import approve_bundle, reject_bundle

    with pytest.raises(ActionRefused, match="never validated"):
        approve_bundle(acting_user=reviewer, bundle_pk=received.pk, note="ok")
    reject_bundle(acting_user=reviewer, bundle_pk=received.pk, reason_code="confirmed_fraud")
    assert sum(DeviceActivity.objects.values_list("total_amount", flat=True)) == Decimal("0")


def test_block_twice_names_first_actor(staff, make_bundle):
    make_bundle(status="accepted")
    actions.block_device(acting_user=staff("fraud1", FRAUD), device_id="DEV_SN", reason="stolen")
    with pytest.raises(ActionRefused, match="last changed by fraud1@molam.test"):
        actions.block_device(acting_user=staff("fraud2", FRAUD), device_id="DEV_SN", reason="stolen")
    assert AuditLog.objects.filter(device_id="DEV_SN", action="device_blocked").count() == 1


def test_block_needs_permission_and_country(staff, make_device):
    make_device("DEV_ML", country="ML")
    with pytest.raises(PermissionDenied):
        actions.block_device(acting_user=staff("ops", OPS, countries=["ML"]), device_id="DEV_ML", reason="x")
    with pytest.raises(NotFound):
        actions.block_device(acting_user=staff("fraud", FRAUD, countries=["SN"]), device_id="DEV_ML", reason="x")
    assert Device.objects.get(device_id="DEV_ML").status == "active"


def test_reactivate_and_deactivate(staff, make_device):
    admin = staff("admin2", PAY_ADMIN)
    make_device("DEV_SN")

    actions.deactivate_device(acting_user=admin, device_id="DEV_SN", reason="terminal returned")
    with pytest.raises(ActionRefused, match="already inactive"):
        actions.deactivate_device(acting_user=admin, device_id="DEV_SN", reason="terminal returned")
    actions.reactivate_device(acting_user=admin, device_id="DEV_SN", reason="terminal back in service")
    with pytest.raises(ActionRefused, match="already active"):
        actions.reactivate_device(acting_user=admin, device_id="DEV_SN", reason="again")

    rows = list(AuditLog.objects.filter(device_id="DEV_SN").exclude(action="device_registered").order_by("id")
                .values_list("action", "old_values", "new_values", "reason"))
    assert rows == [
        ("device_deactivated", {"status": "active"}, {"status": "inactive"}, "terminal returned"),
        ("device_reactivated", {"status": "inactive"}, {"status": "active"}, "terminal back in service"),
    ]


def test_replace_key_audits_fingerprints_only(staff, make_device):
    admin = staff("admin2", PAY_ADMIN)
    make_device("DEV_SN")
    old_fingerprint = Device.objects.get(device_id="DEV_SN").key_fingerprint
    new_identity = DeviceIdentity(device_id="DEV_SN", algorithm="ES256")

    device = actions.replace_device_key(acting_user=admin, device_id="DEV_SN", pubkey_pem=new_identity.pubkey_pem,
                                        reason="merchant regenerated keys")

    assert device.key_alg == "ES256"
    assert device.key_fingerprint != old_fingerprint
    row = AuditLog.objects.get(device_id="DEV_SN", action="device_key_replaced")
    assert row.old_values == {"key_alg": "Ed25519", "key_fingerprint": old_fingerprint}
    assert row.new_values == {"key_alg": "ES256", "key_fingerprint": device.key_fingerprint}
    assert "BEGIN PUBLIC KEY" not in str(row.old_values) + str(row.new_values) + str(row.details)
    with pytest.raises(ActionRefused, match="already has this key"):
        actions.replace_device_key(acting_user=admin, device_id="DEV_SN", pubkey_pem=new_identity.pubkey_pem,
                                   reason="again")
    with pytest.raises(ActionRefused, match="Invalid public key"):
        actions.replace_device_key(acting_user=admin, device_id="DEV_SN", pubkey_pem="not a key", reason="x")


def test_bulk_block_reports_skips(staff, make_device):
    fraud = staff("fraud", FRAUD, countries=["SN"])
    for device_id, country in [("DEV_A", "SN"), ("DEV_B", "SN"), ("DEV_ML", "ML")]:
        make_device(device_id, country=country)
    actions.block_device(acting_user=fraud, device_id="DEV_B", reason="earlier")

    result = actions.block_devices(acting_user=fraud, device_ids=actions.parse_device_ids(
        "DEV_A, DEV_B\nDEV_ML DEV_NOPE DEV_A"), reason="fraud ring 42")

    assert result.changed == ["DEV_A"]
    assert set(result.skipped) == {"DEV_B", "DEV_ML", "DEV_NOPE"}
    assert "already blocked" in result.skipped["DEV_B"]
    assert result.skipped["DEV_ML"] == "Device DEV_ML not found."
    assert result.skipped["DEV_NOPE"] == "Device DEV_NOPE not found."
    assert Device.objects.get(device_id="DEV_ML").status == "active"


def test_block_by_system(make_device):
    make_device("DEV_SN")
    actions.block_device(acting_user=None, device_id="DEV_SN", reason="simulated stolen terminal")
    assert Device.objects.get(device_id="DEV_SN").status == "blocked"
    assert AuditLog.objects.get(device_id="DEV_SN", action="device_blocked").actor == "system"
