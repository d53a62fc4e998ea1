import json

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from audit.models import AuditLog
from bundles.client import DeviceIdentity
from devices.models import Device, KeyAlgorithm
from molam_offline.roles import OPS

pytestmark = pytest.mark.django_db


def runbook_body(pubkey_pem: str, device_id="DEVICE_XXX") -> str:
    # The runbook's curl command, with a real key in place of the elided one.
    return json.dumps({"device_id": device_id, "tenant_type": "merchant", "tenant_id": "merchant_123",
                       "pubkey_pem": pubkey_pem, "country": "SN"})


def post(api_client, body, token=None):
    headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token else {}
    return api_client.generic("POST", "/offline/devices", body, content_type="application/json", **headers)


def test_runbook_curl_registers_device(api_client, pay_admin_token):
    key = DeviceIdentity(device_id="x").pubkey_pem

    response = post(api_client, runbook_body(key), pay_admin_token)

    assert response.status_code == 201, response.content
    device = Device.objects.get(device_id="DEVICE_XXX")
    assert device.key_alg == KeyAlgorithm.ED25519
    assert device.status == "active"
    audit = AuditLog.objects.get(action="device_registered", device_id="DEVICE_XXX")
    assert audit.actor == "payadmin@molam.test"
    assert audit.new_values["key_fingerprint"] == device.key_fingerprint


def test_registration_accepts_p256_key(api_client, pay_admin_token):
    key = DeviceIdentity(device_id="x", algorithm=KeyAlgorithm.ES256).pubkey_pem

    response = post(api_client, runbook_body(key), pay_admin_token)

    assert response.status_code == 201
    assert Device.objects.get(device_id="DEVICE_XXX").key_alg == KeyAlgorithm.ES256


def test_registration_without_token_is_401(api_client):
    response = post(api_client, runbook_body(DeviceIdentity(device_id="x").pubkey_pem))

    assert response.status_code == 401
    assert not Device.objects.exists()


def test_registration_with_bad_token_is_401(api_client):
    response = post(api_client, runbook_body(DeviceIdentity(device_id="x").pubkey_pem), "not-a-token")

    assert response.status_code == 401


def test_registration_by_ops_user_is_403(api_client, make_user):
    from rest_framework.authtoken.models import Token

    token = Token.objects.create(user=make_user("operator", role=OPS)).key

    response = post(api_client, runbook_body(DeviceIdentity(device_id="x").pubkey_pem), token)

    assert response.status_code == 403
    assert not Device.objects.exists()


@pytest.mark.parametrize("pubkey_pem", [
    "not a key",
    "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
    rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode(),
    ec.generate_private_key(ec.SECP384R1()).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode(),
])
def test_registration_rejects_bad_key(api_client, pay_admin_token, pubkey_pem):
    response = post(api_client, runbook_body(pubkey_pem), pay_admin_token)

    assert response.status_code == 400
    assert [error["path"] for error in response.json()["errors"]] == ["$.pubkey_pem"]
    assert not Device.objects.exists()


def test_registration_twice_is_409(api_client, pay_admin_token):
    body = runbook_body(DeviceIdentity(device_id="x").pubkey_pem)
    assert post(api_client, body, pay_admin_token).status_code == 201

    response = post(api_client, body, pay_admin_token)

    assert response.status_code == 409
    assert response.json()["errors"][0]["path"] == "$.device_id"
    assert Device.objects.count() == 1


@pytest.mark.parametrize("field,value", [
    ("country", "sn"), ("country", "SEN"), ("tenant_type", "bank"), ("device_id", "bad id"), ("device_id", ""),
    ("tenant_id", "x" * 65),
])
def test_registration_rejects_bad_field(api_client, pay_admin_token, field, value):
    body = json.loads(runbook_body(DeviceIdentity(device_id="x").pubkey_pem))
    body[field] = value

    response = post(api_client, json.dumps(body), pay_admin_token)

    assert response.status_code == 400
    assert f"$.{field}" in [error["path"] for error in response.json()["errors"]]


def test_registration_rejects_malformed_json(api_client, pay_admin_token):
    response = post(api_client, "{not json", pay_admin_token)

    assert response.status_code == 400
