"""The device simulator against a live server: registration and signed pushes over real HTTP."""

from datetime import timedelta

import pytest
from rest_framework.authtoken.models import Token

from audit.models import AuditAction, AuditLog
from bundles.models import Bundle, BundleStatus
from bundles.simulator import Simulator
from devices.models import Device, DeviceStatus
from devices.services import set_device_status

# The live server runs in another thread with its own connection, so rows must be committed.
# Serialized rollback restores the rows that migrations seed (roles, policies) after the
# flush that ends each transactional test.
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


@pytest.fixture
def simulator(live_server, pay_admin, settings):
    # No broker in the tests, so the server validates each bundle in-process after commit.
    assert not settings.CELERY_BROKER_URL
    assert live_server.url.startswith("http://127.0.0.1:")
    token = Token.objects.create(user=pay_admin).key
    return Simulator(live_server.url, token, run_id="HTTP")


def block(device_id):
    set_device_status(acting_user=None, device_id=device_id, new_status=DeviceStatus.BLOCKED,
                      reason="simulated stolen terminal", action=AuditAction.DEVICE_BLOCKED)


def test_simulator_registers_devices_over_http(simulator):
    simulator.good_pushes()

    devices = Device.objects.filter(device_id__startswith="SIM_HTTP_")
    assert {device.key_alg for device in devices} == {"Ed25519", "ES256"}
    assert devices.count() == 3
    assert AuditLog.objects.filter(action="device_registered", device_id__startswith="SIM_HTTP_").count() == 3


def test_good_bundles_are_accepted(simulator):
    simulator.good_pushes()

    outcomes = simulator.outcomes
    assert len(outcomes) == 6
    assert [outcome.http_status for outcome in outcomes] == [202] * 6
    assert [outcome.status for outcome in outcomes] == ["accepted"] * 6
    stored = Bundle.objects.filter(bundle_id__in=[outcome.bundle_id for outcome in outcomes])
    assert {bundle.status for bundle in stored} == {BundleStatus.ACCEPTED}
    assert {bundle.signature_alg for bundle in stored} == {"Ed25519", "ES256"}
    assert all(bundle.source_ip == "127.0.0.1" for bundle in stored)


def test_repeat_push_over_http_returns_200(simulator):
    identity = simulator.device("REPEAT")
    start = simulator.now() - timedelta(hours=1)
    bundle = identity.seal(simulator.payments(identity, 2, start=start), created_at=simulator.now())
    first = simulator.push("first", identity, bundle, expected_status="accepted")

    again = simulator.push("again", identity, bundle, expected_status="accepted")

    assert first.http_status == 202
    assert again.http_status == 200
    assert again.status == "accepted"
    assert Bundle.objects.get(bundle_id=bundle["bundle_id"]).push_attempts == 2


@pytest.mark.parametrize("scenario,reason", [
    ("bad_signature", "invalid_signature"),
    ("unregistered_device", "unknown_device"),
    ("blocked_device", "device_blocked"),
])
def test_bad_pushes_are_rejected_with_reason(simulator, scenario, reason):
    if scenario == "blocked_device":
        simulator.blocked_device(block)
    else:
        getattr(simulator, scenario)()

    (outcome,) = simulator.outcomes
    assert outcome.http_status == 202
    assert outcome.status == "rejected"
    assert outcome.reason_code == reason
    assert outcome.as_expected
    stored = Bundle.objects.get(bundle_id=outcome.bundle_id)
    assert stored.status == BundleStatus.REJECTED
    assert stored.reason_code == reason
    assert stored.rejected_reason.startswith(f"{reason}: ")
    assert AuditLog.objects.filter(action="bundle_rejected", bundle_id=outcome.bundle_id).count() == 1
