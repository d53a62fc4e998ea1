"""Admin access: TOTP second factor, failed-login lockout, production settings."""

import secrets

import pytest
from django.test import Client, override_settings
from django_otp.oath import totp
from django_otp.plugins.otp_totp.models import TOTPDevice

from molam_offline.roles import OPS
from tests.processes import run_manage

pytestmark = pytest.mark.django_db

PASSWORD = "a-long-test-password"


def login(client, username, password, *, token=None, device=None, address="192.0.2.10"):
    data = {"username": username, "password": password, "next": "/admin/"}
    if token is not None:
        data["otp_device"] = device.persistent_id
        data["otp_token"] = token
    return client.post("/admin/login/?next=/admin/", data, REMOTE_ADDR=address)


def current_token(device: TOTPDevice) -> str:
    return f"{totp(device.bin_key, step=device.step, t0=device.t0, digits=device.digits):0{device.digits}d}"


@pytest.fixture
def staff_with_totp(make_user):
    user = make_user("operator", role=OPS)
    device = TOTPDevice.objects.create(user=user, name="phone", confirmed=True)
    return user, device


@override_settings(MOLAM_REQUIRE_OTP=True)
def test_admin_login_without_token_fails(staff_with_totp):
    client = Client()

    response = login(client, "operator", PASSWORD)

    assert response.status_code == 200
    assert "_auth_user_id" not in client.session
    assert client.get("/admin/").status_code == 302


@override_settings(MOLAM_REQUIRE_OTP=True)
def test_admin_login_with_wrong_token_fails(staff_with_totp):
    _, device = staff_with_totp
    client = Client()
    wrong = f"{(int(current_token(device)) + 1) % 10**6:06d}"

    response = login(client, "operator", PASSWORD, token=wrong, device=device)

    assert response.status_code == 200
    assert client.get("/admin/").status_code == 302


@override_settings(MOLAM_REQUIRE_OTP=True)
def test_admin_login_with_totp_succeeds(staff_with_totp):
    _, device = staff_with_totp
    client = Client()

    response = login(client, "operator", PASSWORD, token=current_token(device), device=device)

    assert response.status_code == 302, response.content[:500]
    assert client.get("/admin/").status_code == 200


@override_settings(MOLAM_REQUIRE_OTP=True)
def test_admin_refuses_unverified_session(staff_with_totp):
    user, _ = staff_with_totp
    client = Client()
    client.force_login(user)

    response = client.get("/admin/")

    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


@override_settings(MOLAM_REQUIRE_OTP=False)
def test_admin_without_otp_setting_uses_password(staff_with_totp):
    client = Client()

    response = login(client, "operator", PASSWORD)

    assert response.status_code == 302
    assert client.get("/admin/").status_code == 200


@override_settings(MOLAM_REQUIRE_OTP=False, AXES_FAILURE_LIMIT=3)
def test_failed_logins_lock_username(staff_with_totp):
    for attempt in range(2):
        assert login(Client(), "operator", f"wrong-{attempt}", address="192.0.2.20").status_code == 200
    assert login(Client(), "operator", "wrong-2", address="192.0.2.21").status_code == 429

    locked = login(Client(), "operator", PASSWORD, address="198.51.100.7")

    assert locked.status_code == 429
    assert "_auth_user_id" not in Client().session


@override_settings(MOLAM_REQUIRE_OTP=False, AXES_FAILURE_LIMIT=3)
def test_failed_logins_lock_address(staff_with_totp, make_user):
    make_user("second", role=OPS)
    for attempt in range(2):
        assert login(Client(), f"guess{attempt}", "wrong-password", address="203.0.113.9").status_code == 200
    assert login(Client(), "guess2", "wrong-password", address="203.0.113.9").status_code == 429

    from_locked_address = login(Client(), "second", PASSWORD, address="203.0.113.9")
    from_other_address = login(Client(), "second", PASSWORD, address="203.0.113.10")

    assert from_locked_address.status_code == 429
    assert from_other_address.status_code == 302


@override_settings(MOLAM_REQUIRE_OTP=False, AXES_FAILURE_LIMIT=3)
def test_successful_login_resets_failures(staff_with_totp):
    for attempt in range(2):
        login(Client(), "operator", f"wrong-{attempt}", address="192.0.2.30")
    assert login(Client(), "operator", PASSWORD, address="192.0.2.30").status_code == 302

    for attempt in range(2):
        login(Client(), "operator", f"again-{attempt}", address="192.0.2.31")

    assert login(Client(), "operator", PASSWORD, address="192.0.2.31").status_code == 302


def test_otp_required_by_default_outside_quickstart():
    result = run_manage("shell", "-c", "from django.conf import settings; "
                                        "print(settings.MOLAM_REQUIRE_OTP, settings.SESSION_COOKIE_SECURE, "
                                        "settings.CSRF_COOKIE_SECURE, settings.SECURE_SSL_REDIRECT)",
                        MOLAM_QUICKSTART="0", DJANGO_SECRET_KEY=secrets.token_urlsafe(50))

    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1].split() == ["True", "True", "True", "True"]


@pytest.mark.django_db(transaction=True)
def test_check_deploy_passes_with_production_settings():
    result = run_manage("check", "--deploy", "--fail-level", "WARNING", MOLAM_QUICKSTART="0",
                        DJANGO_SECRET_KEY=secrets.token_urlsafe(50), ALLOWED_HOSTS="backoffice.molam.test")

    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_add_totp_device_command_enrols_staff(make_user):
    from django.core.management import call_command
    from io import StringIO

    user = make_user("enrolled", role=OPS)
    output = StringIO()

    call_command("add_totp_device", "enrolled", stdout=output)

    device = TOTPDevice.objects.get(user=user)
    assert output.getvalue().startswith("otpauth://totp/")
    assert device.confirmed
