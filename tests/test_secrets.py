"""Secrets stay out of logs, responses and error pages. The audit log names actor and address."""

import base64
import json
import logging

import pytest
from axes.models import AccessAttempt, AccessLog
from cryptography.hazmat.primitives import serialization
from django.conf import settings
from django.test import Client, override_settings
from django_otp.plugins.otp_totp.models import TOTPDevice
from rest_framework.authtoken.models import Token

from audit.models import AuditLog
from bundles.client import DeviceIdentity, encode
from devices.models import Device
from molam_offline.roles import OPS
from tests.battery import report

pytestmark = pytest.mark.django_db

PASSWORD = "a-long-test-password"


def private_key_texts(identity: DeviceIdentity) -> list[str]:
    key = identity.private_key
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    return [pem, "PRIVATE KEY", base64.b64encode(der).decode(), der.hex()]


def public_key_body(identity: DeviceIdentity) -> str:
    """Return the base64 body of the public key PEM, the part that identifies the key in full."""
    return "".join(line for line in identity.pubkey_pem.splitlines() if not line.startswith("-----"))


@override_settings(MOLAM_REQUIRE_OTP=False, DEBUG=False)
def test_full_flow_leaks_no_secret(caplog, make_user, now):
    caplog.set_level(logging.DEBUG)
    pay_admin = make_user("keeper", role="pay_admin")
    token = Token.objects.create(user=pay_admin).key
    operator = make_user("operator", role=OPS)
    totp = TOTPDevice.objects.create(user=operator, name="phone", confirmed=True)
    identity = DeviceIdentity(device_id="SECRET_DEV")
    api = Client(HTTP_AUTHORIZATION=f"Bearer {token}", REMOTE_ADDR="198.51.100.23", raise_request_exception=False)
    answers = []

    registration = dict(identity.registration(), private_key=private_key_texts(identity)[0])
    answers.append(api.post("/offline/devices", json.dumps(registration), content_type="application/json"))
    private_in_pubkey = dict(identity.registration(), device_id="SECRET_DEV2", pubkey_pem=private_key_texts(identity)[0])
    answers.append(api.post("/offline/devices", json.dumps(private_in_pubkey), content_type="application/json"))
    answers.append(api.get("/offline/devices/SECRET_DEV"))
    answers.append(Client(HTTP_AUTHORIZATION=f"Bearer {token[:-1]}x").get("/offline/devices"))

    bundle = identity.seal([identity.transaction(amount="1500", sender="+221770000001", receiver="+221770000002",
                                                 initiated_at=now)], created_at=now)
    device_client = Client(REMOTE_ADDR="198.51.100.24", raise_request_exception=False)
    answers.append(device_client.post("/offline/bundles", encode(identity.sign_for_push(bundle, sent_at=now)),
                                      content_type="application/json"))
    answers.append(device_client.post("/offline/bundles", b'{"bundle_id": 1}', content_type="application/json"))

    browser = Client(raise_request_exception=False)
    answers.append(browser.post("/admin/login/", {"username": "operator", "password": "not-" + PASSWORD}))
    answers.append(browser.post("/admin/login/", {"username": "operator", "password": PASSWORD}))
    answers.append(browser.get("/admin/"))
    answers.append(browser.get("/no-such-page"))

    secrets = {"API token": token, "password": PASSWORD, "SECRET_KEY": settings.SECRET_KEY,
               "TOTP key": totp.key, "public key": public_key_body(identity)}
    secrets.update({f"private key {i}": text for i, text in enumerate(private_key_texts(identity))})
    texts = {"logs": caplog.text, **{f"answer {i}": answer.content.decode("utf-8", "replace")
                                     for i, answer in enumerate(answers)}}
    leaks = [(name, where) for name, secret in secrets.items() for where, text in texts.items() if secret in text]

    report("Secrets in logs and answers", secrets=len(secrets), places=len(texts), leaks=len(leaks))
    assert [answer.status_code for answer in answers] == [201, 400, 200, 401, 202, 400, 200, 302, 200, 404]
    assert leaks == []


def test_private_key_is_never_stored(api_client, pay_admin_token):
    identity = DeviceIdentity(device_id="KEY_DEV")
    headers = {"HTTP_AUTHORIZATION": f"Bearer {pay_admin_token}"}
    body = dict(identity.registration(), private_key=private_key_texts(identity)[0])
    assert api_client.post("/offline/devices", body, format="json", **headers).status_code == 201
    wrong = dict(identity.registration(), device_id="KEY_DEV2", pubkey_pem=private_key_texts(identity)[0])
    assert api_client.post("/offline/devices", wrong, format="json", **headers).status_code == 400

    stored = json.dumps([list(Device.objects.values()), list(AuditLog.objects.values())], default=str)

    assert "PRIVATE KEY" not in stored
    assert private_key_texts(identity)[2] not in stored
    assert Device.objects.get().pubkey_pem.startswith("-----BEGIN PUBLIC KEY-----")


@override_settings(DEBUG=False)
def test_500_page_shows_no_detail(monkeypatch, make_device, sample_bundle, now):
    import bundles.views

    def broken(*args, **kwargs):
        raise RuntimeError(f"internal detail {settings.SECRET_KEY}")

    monkeypatch.setattr(bundles.views, "ingest_bundle", broken)
    device = make_device()
    client = Client(raise_request_exception=False)

    response = client.post("/offline/bundles", encode(device.sign_for_push(sample_bundle(device), sent_at=now)),
                           content_type="application/json")

    assert response.status_code == 500
    assert b"internal detail" not in response.content
    assert settings.SECRET_KEY.encode() not in response.content
    assert b"Traceback" not in response.content


def test_audit_rows_name_actor_and_address(make_user, pay_admin, now):
    token = Token.objects.create(user=pay_admin).key
    identity = DeviceIdentity(device_id="AUDIT_DEV")
    Client(HTTP_AUTHORIZATION=f"Bearer {token}", REMOTE_ADDR="198.51.100.31").post(
        "/offline/devices", json.dumps(identity.registration()), content_type="application/json")
    bundle = identity.seal([identity.transaction(amount="1500", sender="+221770000001", receiver="+221770000002",
                                                 initiated_at=now)], created_at=now)
    Client(REMOTE_ADDR="198.51.100.32").post("/offline/bundles", encode(identity.sign_for_push(bundle, sent_at=now)),
                                             content_type="application/json")
    make_user("operator", role=OPS)
    Client().post("/admin/login/", {"username": "operator", "password": "wrong"}, REMOTE_ADDR="198.51.100.33")
    failed_attempt = AccessAttempt.objects.filter(username="operator", ip_address="198.51.100.33").exists()
    with override_settings(MOLAM_REQUIRE_OTP=False):
        Client().post("/admin/login/", {"username": "operator", "password": PASSWORD}, REMOTE_ADDR="198.51.100.34")

    registered = AuditLog.objects.get(action="device_registered", device_id="AUDIT_DEV")
    received = AuditLog.objects.get(action="bundle_received", device_id="AUDIT_DEV")
    assert (registered.actor, registered.actor_user, registered.ip_address) == (pay_admin.email, pay_admin,
                                                                                 "198.51.100.31")
    assert (received.actor, received.ip_address) == ("device:AUDIT_DEV", "198.51.100.32")
    assert failed_attempt
    assert AccessLog.objects.filter(username="operator", ip_address="198.51.100.34").exists()
