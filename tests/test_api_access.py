"""API access: who can call which endpoint, throttling, body limits, and what responses reveal."""

import json
from datetime import timedelta

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.test import Client, override_settings
from django.urls import get_resolver
from rest_framework.authtoken.models import Token

from audit.models import AuditLog
from bundles.client import DeviceIdentity, encode
from bundles.models import Bundle, Transaction
from molam_offline.roles import ENGINEER, FRAUD, OPS, PAY_ADMIN
from tests.battery import report

pytestmark = pytest.mark.django_db

# Every route outside the admin. A new route fails test_matrix_covers_every_api_route
# until it gets a row in EXPECTED.
API_ROUTES = {"offline/devices", "offline/devices/<str:device_id>", "offline/bundles", "api/schema", "healthz",
              "readyz", "metrics"}

ROLES = ["anonymous", "bad_token", "inactive_pay_admin", "staff_without_role", OPS, FRAUD, ENGINEER, PAY_ADMIN,
         "superuser", "pay_admin_session_without_csrf"]

DENIED_TOKEN = {"anonymous": 401, "bad_token": 401, "inactive_pay_admin": 401, "staff_without_role": 403,
                OPS: 403, FRAUD: 403, ENGINEER: 403}
PAY_ADMINS = ("pay_admin", "superuser", "pay_admin_session_without_csrf")


def expected_for(allowed_code, *, unsafe=False):
    answer = dict(DENIED_TOKEN)
    answer.update({role: allowed_code for role in PAY_ADMINS})
    if unsafe:
        # Session authentication enforces CSRF on unsafe methods; tokens do not need it.
        answer["pay_admin_session_without_csrf"] = 403
    return answer


# (method, path, route) -> {role: expected status}.
EXPECTED = {
    ("GET", "/offline/devices", "offline/devices"): expected_for(200),
    ("GET", "/offline/devices?country=ML", "offline/devices"): expected_for(200),
    ("POST", "/offline/devices", "offline/devices"): expected_for(201, unsafe=True),
    ("DELETE", "/offline/devices", "offline/devices"): expected_for(405, unsafe=True),
    ("GET", "/offline/devices/DEV_SN", "offline/devices/<str:device_id>"): expected_for(200),
    ("GET", "/offline/devices/DEV_MISSING", "offline/devices/<str:device_id>"): expected_for(404),
    ("PATCH", "/offline/devices/DEV_SN", "offline/devices/<str:device_id>"): expected_for(405, unsafe=True),
    ("DELETE", "/offline/devices/DEV_SN", "offline/devices/<str:device_id>"): expected_for(405, unsafe=True),
    ("POST", "/offline/bundles", "offline/bundles"): {role: 202 for role in ROLES},
    ("GET", "/offline/bundles", "offline/bundles"): {role: 405 for role in ROLES},
    # The schema is public, but a token that is sent must be valid.
    ("GET", "/api/schema", "api/schema"): {**{role: 200 for role in ROLES}, "bad_token": 401,
                                           "inactive_pay_admin": 401},
    # Probes and Prometheus send no credentials; the figures they return name no device or bundle.
    ("GET", "/healthz", "healthz"): {role: 200 for role in ROLES},
    ("GET", "/readyz", "readyz"): {role: 200 for role in ROLES},
    ("GET", "/metrics", "metrics"): {role: 200 for role in ROLES},
}


def api_routes() -> set[str]:
    return {str(pattern.pattern) for pattern in get_resolver().url_patterns
            if not str(pattern.pattern).startswith("admin/")}


def test_matrix_covers_every_api_route():
    assert api_routes() == API_ROUTES
    assert {route for _, _, route in EXPECTED} == API_ROUTES


@pytest.fixture
def clients(make_user, pay_admin):
    """One client per role, each with the credentials that role would send."""
    token_users = {
        "inactive_pay_admin": make_user("inactive", role=PAY_ADMIN, is_active=False),
        "staff_without_role": get_user_model().objects.create_user("staffonly", "staffonly@molam.test",
                                                                   "a-long-test-password", is_staff=True),
        OPS: make_user("ops1", role=OPS),
        FRAUD: make_user("fraud1", role=FRAUD),
        ENGINEER: make_user("eng1", role=ENGINEER),
        PAY_ADMIN: pay_admin,
        "superuser": make_user("root", superuser=True),
    }
    result = {"anonymous": Client(), "bad_token": Client(HTTP_AUTHORIZATION="Bearer " + "0" * 40)}
    for role, user in token_users.items():
        result[role] = Client(HTTP_AUTHORIZATION=f"Bearer {Token.objects.create(user=user).key}")
    session = Client(enforce_csrf_checks=True)
    session.force_login(pay_admin)
    result["pay_admin_session_without_csrf"] = session
    return result


def request(client, method, path, body=b""):
    return client.generic(method, path, body, content_type="application/json")


def test_permission_matrix(clients, make_device, sample_bundle, now):
    make_device("DEV_SN", country="SN")
    make_device("DEV_ML", country="ML")
    pusher = make_device("DEV_PUSH")
    tried = mismatches = 0

    for (method, path, _route), expected in EXPECTED.items():
        for role in ROLES:
            body = b""
            if path == "/offline/devices" and method == "POST":
                body = json.dumps(DeviceIdentity(device_id=f"NEW_{tried}").registration()).encode()
            elif path == "/offline/bundles" and method == "POST":
                body = encode(pusher.sign_for_push(sample_bundle(pusher, 1), sent_at=now))

            response = request(clients[role], method, path, body)
            tried += 1

            if response.status_code != expected[role]:
                mismatches += 1
            assert response.status_code == expected[role], (method, path, role, response.content[:300])
            assert response.status_code < 500

    report("API permission matrix", pairs=tried, mismatches=mismatches)


def test_denied_answers_reveal_nothing(clients, make_device):
    """Denied requests get the same 401 or 403 body whether the device exists, in any country, or not."""
    make_device("DEV_SN", country="SN")
    make_device("DEV_ML", country="ML")
    leaks = 0

    for role, status in DENIED_TOKEN.items():
        bodies = {request(clients[role], "GET", path).content
                  for path in ["/offline/devices/DEV_SN", "/offline/devices/DEV_ML", "/offline/devices/NOPE",
                               "/offline/devices", "/offline/devices?country=SN", "/offline/devices?country=ML"]}
        leaks += len(bodies) - 1
        assert len(bodies) == 1, (role, bodies)
        assert b"DEV_" not in bodies.pop()

    report("API denial answers", roles=len(DENIED_TOKEN), leaks=leaks)


def test_api_never_returns_bundles_or_audit_rows(clients, make_device, sample_bundle, push, now):
    """No API route serves bundles, transactions or audit rows, to any role."""
    device = make_device("DEV_SN", country="SN")
    bundle = sample_bundle(device, 2)
    assert push(device, bundle).status_code == 202
    secrets_of_bundle = [bundle["bundle_id"].encode(), b"+221770000001", b"bundle_received"]
    paths = ["/offline/devices", "/offline/devices/DEV_SN", f"/offline/bundles/{bundle['bundle_id']}",
             f"/offline/bundles?bundle_id={bundle['bundle_id']}", "/offline/audit", "/offline/transactions",
             "/api/audit", "/api/bundles"]
    leaks = tried = 0

    for role, client in clients.items():
        for path in paths:
            response = request(client, "GET", path)
            tried += 1
            found = [needle for needle in secrets_of_bundle if needle in response.content]
            leaks += bool(found)
            assert not found, (role, path, found)

    report("API bundle and audit exposure", requests=tried, leaks=leaks)


def test_conflict_hides_other_devices_bundle(make_device, sample_bundle, push, now):
    owner = make_device("DEV_OWNER")
    intruder = make_device("DEV_INTRUDER")
    bundle = sample_bundle(owner, 1)
    assert push(owner, bundle).status_code == 202

    claimed = intruder.seal([intruder.transaction(amount="5", sender="a", receiver="b",
                                                  initiated_at=now - timedelta(minutes=5))],
                            created_at=now - timedelta(minutes=1), bundle_id=bundle["bundle_id"])
    foreign = push(intruder, claimed)
    changed = json.loads(json.dumps(bundle))
    changed["transactions"][0]["amount"] = "7"
    own = push(owner, changed)

    assert foreign.status_code == 409
    assert "bundle" not in foreign.json()
    assert b"received" not in foreign.content
    assert b"accepted" not in foreign.content
    assert own.status_code == 409
    assert own.json()["bundle"]["bundle_id"] == bundle["bundle_id"]


def test_unsigned_conflict_hides_bundle(make_device, sample_bundle, push, now):
    owner = make_device("DEV_OWNER")
    bundle = sample_bundle(owner, 1)
    assert push(owner, bundle).status_code == 202
    changed = json.loads(json.dumps(bundle))
    changed["transactions"][0]["amount"] = "7"

    forged = push(owner, changed, key=DeviceIdentity(device_id="x").private_key)

    assert forged.status_code == 409
    assert "bundle" not in forged.json()


@pytest.fixture
def fresh_throttles():
    cache.clear()
    yield
    cache.clear()


@override_settings(API_THROTTLE_RATES={"bundle_push_address": "3/min"})
def test_push_throttled_per_address_before_parsing(fresh_throttles):
    client = Client(REMOTE_ADDR="198.51.100.1")
    for _ in range(3):
        assert request(client, "POST", "/offline/bundles", b"{not json").status_code == 400

    throttled = request(client, "POST", "/offline/bundles", b"{not json")
    other_address = request(Client(REMOTE_ADDR="198.51.100.2"), "POST", "/offline/bundles", b"{not json")

    assert throttled.status_code == 429
    assert int(throttled["Retry-After"]) > 0
    assert other_address.status_code == 400


@override_settings(API_THROTTLE_RATES={"bundle_push_device": "2/min"})
def test_push_throttled_per_device(fresh_throttles, make_device, sample_bundle, push):
    device = make_device("DEV_BUSY")
    other = make_device("DEV_CALM")
    assert push(device, sample_bundle(device, 1)).status_code == 202
    assert push(device, sample_bundle(device, 1)).status_code == 202

    throttled = push(device, sample_bundle(device, 1))
    other_device = push(other, sample_bundle(other, 1))

    assert throttled.status_code == 429
    assert int(throttled["Retry-After"]) > 0
    assert Bundle.objects.filter(device_id="DEV_BUSY").count() == 2
    assert other_device.status_code == 202


@override_settings(API_THROTTLE_RATES={"bundle_push_device": "2/min"})
def test_forged_pushes_do_not_use_device_rate(fresh_throttles, make_device, sample_bundle, push):
    device = make_device("DEV_TARGET")
    forger_key = DeviceIdentity(device_id="forger").private_key
    for _ in range(5):
        forged = push(device, sample_bundle(device, 1), key=forger_key)
        assert forged.json()["reason_code"] == "invalid_signature"

    genuine = [push(device, sample_bundle(device, 1)).status_code for _ in range(2)]

    assert genuine == [202, 202]


@override_settings(API_THROTTLE_RATES={"registration_user": "2/min"})
def test_registration_throttled_per_user(fresh_throttles, api_client, pay_admin_token):
    headers = {"HTTP_AUTHORIZATION": f"Bearer {pay_admin_token}"}
    codes = []
    for number in range(3):
        body = json.dumps(DeviceIdentity(device_id=f"REG_{number}").registration())
        codes.append(api_client.generic("POST", "/offline/devices", body, content_type="application/json",
                                        **headers))

    assert [response.status_code for response in codes] == [201, 201, 429]
    assert int(codes[-1]["Retry-After"]) > 0


@override_settings(API_THROTTLE_RATES={"registration_address": "2/min"})
def test_registration_throttled_per_address_before_auth(fresh_throttles):
    client = Client(REMOTE_ADDR="203.0.113.50", HTTP_AUTHORIZATION="Bearer " + "1" * 40)

    codes = [request(client, "POST", "/offline/devices", b"{}").status_code for _ in range(3)]

    assert codes == [401, 401, 429]


@override_settings(API_MAX_BODY_BYTES=2048)
def test_registration_body_limit(api_client, pay_admin_token):
    headers = {"HTTP_AUTHORIZATION": f"Bearer {pay_admin_token}"}
    body = json.loads(json.dumps(DeviceIdentity(device_id="BIG").registration()))
    body["tenant_id"] = "x" * 4000

    response = api_client.generic("POST", "/offline/devices", json.dumps(body), content_type="application/json",
                                  **headers)

    assert response.status_code == 413
    assert "2048" in response.json()["detail"]


@override_settings(API_MAX_BODY_BYTES=2048)
def test_registration_declared_length_checked_before_reading(api_client, pay_admin_token):
    response = api_client.generic("POST", "/offline/devices", b"{}", content_type="application/json",
                                  HTTP_AUTHORIZATION=f"Bearer {pay_admin_token}", CONTENT_LENGTH="999999999")

    assert response.status_code == 413


def test_four_xx_pushes_store_nothing(make_device, sample_bundle, push):
    device = make_device()
    before = (Bundle.objects.count(), Transaction.objects.count(), AuditLog.objects.count())

    for body in [b"", b"[]", b"{}", b"\x00", b'{"bundle_id": "a", "bundle_id": "b"}']:
        assert push(device, None, body=body).status_code == 400

    assert (Bundle.objects.count(), Transaction.objects.count(), AuditLog.objects.count()) == before


@override_settings(OFFLINE={**settings.OFFLINE, "MAX_BUNDLE_BYTES": 4096})
def test_push_body_limit(make_device, sample_bundle, push, now):
    device = make_device()
    oversized = encode(device.sign_for_push(sample_bundle(device, 40), sent_at=now))
    assert len(oversized) > 4096

    response = push(device, None, body=oversized)
    declared = Client().generic("POST", "/offline/bundles", b"{}", content_type="application/json",
                                CONTENT_LENGTH="999999999")

    assert response.status_code == 413
    assert declared.status_code == 413
    assert not Bundle.objects.exists()


def test_database_errors_become_503_outside_drf(rf):
    from django.db import InterfaceError, OperationalError

    from molam_offline.middleware import DatabaseUnavailableMiddleware

    middleware = DatabaseUnavailableMiddleware(lambda request: None)
    request = rf.get("/admin/bundles/bundle/")

    for error in (OperationalError("server closed the connection"), InterfaceError("connection already closed")):
        response = middleware.process_exception(request, error)
        assert response.status_code == 503
        assert int(response["Retry-After"]) > 0
    assert middleware.process_exception(request, ValueError("not a database error")) is None
