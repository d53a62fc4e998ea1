"""Bad input on the device API: every case gets a 4xx naming the field, never a 500, and stores nothing."""

import json
from datetime import timedelta

import pytest
from django.conf import settings

from audit.models import AuditLog
from bundles.client import DeviceIdentity, encode
from bundles.models import Bundle, Transaction
from devices.models import Device

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    # Every test creates a pay_admin user; the default PBKDF2 hashing would dominate the run time.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def device(make_device):
    return make_device("DEVICE_042")


@pytest.fixture
def signed(device, sample_bundle, now):
    """A valid signed bundle of two payments, to be broken by each test."""
    bundle = sample_bundle(device, 2)
    bundle["transactions"][0]["note"] = "Riz 25 kg, boutique Aïda"
    return device.sign_for_push(bundle, sent_at=now)


@pytest.fixture
def stored_rows():
    """Count the rows a push could write; the device's registration audit row is already there."""

    def count():
        return {"bundles": Bundle.objects.count(), "transactions": Transaction.objects.count(),
                "audit": AuditLog.objects.count()}

    return count


@pytest.fixture
def post_bundle(api_client, django_capture_on_commit_callbacks):
    def post(body: bytes, *, content_type="application/json", **headers):
        with django_capture_on_commit_callbacks(execute=True):
            return api_client.generic("POST", "/offline/bundles", body, content_type=content_type, **headers)

    return post


@pytest.fixture
def rejects(post_bundle, stored_rows):
    """Post `body` and check the status, that one error has `path` and `code`, and that nothing was stored."""

    def check(body: bytes, *, path: str, code: str, status: int = 400, **post_options) -> dict:
        before = stored_rows()

        response = post_bundle(body, **post_options)

        assert response.status_code == status, response.content
        answer = response.json()
        assert answer["detail"]
        matching = [error for error in answer["errors"] if error["path"] == path and error["code"] == code]
        assert matching, f"no {code} error at {path} in {answer['errors']}"
        assert matching[0]["message"]
        assert stored_rows() == before
        return answer

    return check


def with_change(document: dict, path: tuple, value) -> bytes:
    """Return the encoded document with the member at `path` set to `value`."""
    document = json.loads(json.dumps(document))
    target = document
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    return encode(document)


def without(document: dict, path: tuple) -> bytes:
    document = json.loads(json.dumps(document))
    target = document
    for step in path[:-1]:
        target = target[step]
    del target[path[-1]]
    return encode(document)


def json_path(path: tuple) -> str:
    text = "$"
    for step in path:
        text += f"[{step}]" if isinstance(step, int) else f".{step}"
    return text


TOP_LEVEL_STRINGS = [("bundle_id",), ("device_id",), ("created_at",), ("sent_at",)]
TRANSACTION_STRINGS = [("transactions", 0, name) for name in
                       ("local_id", "type", "amount", "currency", "sender", "receiver", "initiated_at", "note")]
SIGNATURE_STRINGS = [("signature", "alg"), ("signature", "value")]
ALL_STRINGS = TOP_LEVEL_STRINGS + TRANSACTION_STRINGS + SIGNATURE_STRINGS
REQUIRED = ([("bundle_id",), ("device_id",), ("sequence",), ("created_at",), ("sent_at",), ("transactions",),
             ("signature",)] + [path for path in TRANSACTION_STRINGS if path[-1] != "note"] + SIGNATURE_STRINGS)


# Whole-body problems ---------------------------------------------------------------

@pytest.mark.parametrize("body,code", [
    (b'{"bundle_id": ', "invalid_json"),
    (b"", "empty_body"),
    (b"{'bundle_id': 'single quotes'}", "invalid_json"),
    (b'{"a": 1} {"b": 2}', "invalid_json"),
    (b"[]", "invalid_type"),
    (b'[{"bundle_id": "x"}]', "invalid_type"),
    (b'"a bundle"', "invalid_type"),
    (b"null", "invalid_type"),
    (b"1500", "invalid_type"),
    (b'{"sequence": NaN}', "invalid_number"),
    (b'{"sequence": -Infinity}', "invalid_number"),
    (b'{"sequence": 1' + b"0" * 5000 + b"}", "invalid_number"),
    (b'{"note": "Riz \xff"}', "invalid_encoding"),
    (b'{"note": "A\xc3"}', "invalid_encoding"),
    (b"\xef\xbb\xbf{}", "invalid_json"),
])
def test_unparseable_body_is_400(rejects, body, code):
    rejects(body, path="$", code=code)


def test_duplicate_top_level_key_is_400(rejects, signed):
    body = encode(signed).replace(b'{"bundle_id"', b'{"sequence": 1, "bundle_id"', 1)

    answer = rejects(body, path="$", code="duplicate_key")

    assert '"sequence"' in answer["errors"][0]["message"]


def test_duplicate_key_in_transaction_is_400(rejects, signed):
    body = encode(signed).replace(b'"transactions": [{', b'"transactions": [{"amount": "1", ', 1)

    answer = rejects(body, path="$", code="duplicate_key")

    assert '"amount"' in answer["errors"][0]["message"]


def test_deep_nesting_is_400(rejects, signed):
    assert settings.OFFLINE["MAX_JSON_DEPTH"] == 8
    deep = encode(signed)[:-1] + b', "extra": ' + b"[" * 9 + b"]" * 9 + b"}"

    rejects(deep, path="$", code="too_deep")


def test_very_deep_nesting_is_400_not_recursion_error(rejects):
    rejects(b"[" * 100_000 + b"]" * 100_000, path="$", code="too_deep")


def test_brackets_inside_strings_do_not_count_as_nesting(post_bundle, signed):
    document = json.loads(json.dumps(signed))
    document["transactions"][0]["note"] = "[[[[[[[[[[{{{{{{{{{{"

    response = post_bundle(encode(document))

    # The note changed after signing, so the bundle is stored as rejected, but it parses.
    assert response.status_code == 202, response.content
    assert response.json()["reason_code"] == "invalid_signature"


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data",
                                          "application/xml", ""])
def test_wrong_content_type_is_415(rejects, signed, content_type):
    rejects(encode(signed), path="$", code="unsupported_media_type", status=415, content_type=content_type)


def test_json_content_type_with_charset_is_accepted(post_bundle, signed):
    response = post_bundle(encode(signed), content_type="application/json; charset=utf-8")

    assert response.status_code == 202, response.content


def test_body_over_size_limit_is_413(rejects, signed):
    limit = settings.OFFLINE["MAX_BUNDLE_BYTES"]
    document = json.loads(json.dumps(signed))
    document["padding"] = "x" * limit

    answer = rejects(encode(document), path="$", code="too_large", status=413)

    assert str(limit) in answer["detail"]


def test_declared_length_over_limit_is_413(rejects, signed):
    limit = settings.OFFLINE["MAX_BUNDLE_BYTES"]

    rejects(encode(signed), path="$", code="too_large", status=413, CONTENT_LENGTH=str(limit + 1))


def test_body_without_content_length_is_400(rejects, signed):
    # A chunked upload has no Content-Length, and Django then reads no body.
    answer = rejects(encode(signed), path="$", code="empty_body", CONTENT_LENGTH="")

    assert "Content-Length" in answer["detail"]


def test_invalid_content_length_is_400(rejects, signed):
    rejects(encode(signed), path="$", code="invalid_length", CONTENT_LENGTH="12abc")


def test_body_of_exactly_size_limit_is_parsed(post_bundle, signed, settings):
    settings.OFFLINE = {**settings.OFFLINE, "MAX_BUNDLE_BYTES": len(encode(signed))}

    response = post_bundle(encode(signed))

    assert response.status_code == 202, response.content


# Members ---------------------------------------------------------------------------

@pytest.mark.parametrize("path", REQUIRED, ids=json_path)
def test_missing_field_is_400(rejects, signed, path):
    rejects(without(signed, path), path=json_path(path), code="required")


@pytest.mark.parametrize("path", [("extra",), ("transactions", 0, "fee"), ("signature", "kid")], ids=json_path)
def test_unknown_field_is_400(rejects, signed, path):
    rejects(with_change(signed, path, "x"), path=json_path(path), code="unknown_field")


def test_odd_unknown_field_name_quoted(rejects, signed):
    rejects(with_change(signed, ("a b",), 1), path='$."a b"', code="unknown_field")


WRONG_STRING_TYPES = ([(path, 1500) for path in ALL_STRINGS]
                      + [(("bundle_id",), value) for value in (15.5, True, ["x"], {"x": 1})]
                      + [(("transactions", 0, "note"), value) for value in (15.5, False, ["x"], {"x": 1})])


@pytest.mark.parametrize("path,value", WRONG_STRING_TYPES, ids=str)
def test_wrong_type_for_string_field_is_400(rejects, signed, path, value):
    rejects(with_change(signed, path, value), path=json_path(path), code="invalid_type")


@pytest.mark.parametrize("path", [path for path in REQUIRED if len(path) > 1 or path[0] != "transactions"],
                         ids=json_path)
def test_null_required_field_is_400(rejects, signed, path):
    code = "invalid_type" if path == ("transactions", 0) else "null"

    rejects(with_change(signed, path, None), path=json_path(path), code=code)


@pytest.mark.parametrize("path,value", [
    (("sequence",), "187"), (("sequence",), 187.0), (("sequence",), 1.5), (("sequence",), True), (("sequence",), [1]),
    (("transactions",), {"local_id": "tx-1"}), (("transactions",), "tx-1"), (("transactions",), 2),
    (("transactions", 0), "tx-1"), (("transactions", 0), ["tx-1"]), (("transactions", 0), None),
    (("signature",), "c2lnbmF0dXJl"), (("signature",), ["Ed25519", "x"]),
], ids=str)
def test_wrong_type_for_structured_field_is_400(rejects, signed, path, value):
    rejects(with_change(signed, path, value), path=json_path(path), code="invalid_type")


def test_null_note_is_accepted(post_bundle, signed, device, now):
    document = json.loads(json.dumps(signed))
    document["transactions"][0]["note"] = None
    body = encode(device.sign_for_push(document, sent_at=now))

    assert post_bundle(body).status_code == 202


FORBIDDEN_CHARACTERS = ([(path, "\u0000") for path in ALL_STRINGS]
                        + [(("transactions", 0, "note"), character) for character in ("\n", "\u001b", "\u007f",
                                                                                      "\u2028", "\ud800", "\udfff")]
                        + [(("bundle_id",), "\ud800")])


@pytest.mark.parametrize("path,character", FORBIDDEN_CHARACTERS, ids=str)
def test_control_character_in_string_is_400(rejects, signed, path, character):
    document = json.loads(json.dumps(signed))
    target = document
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = target[path[-1]][:-1] + character

    # json.dumps writes \u0000 and \ud800 as escapes, as a device's JSON library would.
    # Amounts are checked against their pattern instead.
    code = "invalid_amount" if path[-1] == "amount" else "invalid_character"
    rejects(json.dumps(document).encode("ascii"), path=json_path(path), code=code)


@pytest.mark.parametrize("path,length", [
    (("bundle_id",), 65), (("device_id",), 65), (("transactions", 0, "local_id"), 65),
    (("transactions", 0, "type"), 33), (("transactions", 0, "sender"), 65), (("transactions", 0, "receiver"), 65),
    (("transactions", 0, "note"), 141), (("created_at",), 41), (("signature", "alg"), 17),
    (("signature", "value"), 201), (("transactions", 0, "currency"), 4),
], ids=str)
def test_overlong_string_is_400(rejects, signed, path, length):
    answer = rejects(with_change(signed, path, "a" * length), path=json_path(path), code="too_long")

    assert str(length) in answer["errors"][0]["message"]


def test_note_of_140_non_ascii_characters_is_accepted(post_bundle, signed, device, now):
    document = json.loads(json.dumps(signed))
    document["transactions"][0]["note"] = "ï" * 139 + "😀"
    body = encode(device.sign_for_push(document, sent_at=now))

    assert post_bundle(body).status_code == 202


MALFORMED_IDENTIFIERS = ([(("bundle_id",), value) for value in ("", "bad id", "-leading-dash", "Aïda", "a/b")]
                         + [(path, "bad id") for path in (("device_id",), ("transactions", 0, "local_id"),
                                                          ("transactions", 0, "sender"),
                                                          ("transactions", 1, "receiver"))]
                         + [(("transactions", 0, "type"), "P2P")])


@pytest.mark.parametrize("path,value", MALFORMED_IDENTIFIERS, ids=str)
def test_malformed_identifier_is_400(rejects, signed, path, value):
    code = "blank" if value == "" else "invalid_format"

    rejects(with_change(signed, path, value), path=json_path(path), code=code)


# Timestamps ------------------------------------------------------------------------

@pytest.mark.parametrize("path", [("sent_at",), ("transactions", 1, "initiated_at")], ids=json_path)
def test_naive_timestamp_is_400(rejects, signed, path):
    rejects(with_change(signed, path, "2026-12-04T09:58:00"), path=json_path(path), code="invalid_timestamp")


@pytest.mark.parametrize("value", [
    "2026-12-04T09:58:00",  # no offset
    "2026-12-04 09:58:00Z",
    "2026-12-04",
    "09:58:00Z",
    "2026-12-04T09:58Z",
    "2026-12-04T09:58:00+0000",
    "2026-12-04T09:58:00 UTC",
    "1733306280",
    "2026-12-04T09:58:00.1234567891Z",
])
def test_malformed_timestamp_is_400(rejects, signed, value):
    rejects(with_change(signed, ("created_at",), value), path="$.created_at", code="invalid_timestamp")


@pytest.mark.parametrize("value", [
    "2026-02-30T10:00:00Z",
    "2026-13-01T10:00:00Z",
    "2026-12-00T10:00:00Z",
    "2026-12-04T24:00:00Z",
    "2026-12-04T10:60:00Z",
    "2026-12-04T10:00:61Z",
    "2026-12-04T10:00:00+25:00",
    "0000-12-04T10:00:00Z",
    "0001-01-01T00:00:00+01:00",  # before year 1 in UTC
    "9999-12-31T23:59:59-01:00",  # after year 9999 in UTC
])
def test_impossible_timestamp_is_400(rejects, signed, value):
    rejects(with_change(signed, ("created_at",), value), path="$.created_at", code="invalid_timestamp")


@pytest.mark.parametrize("value", ["2026-12-04T09:58:00+01:00", "2026-12-04t09:58:00z",
                                   "2026-12-04T09:58:00.123456789-05:30"])
def test_timestamp_with_offset_is_accepted(post_bundle, signed, device, now, value):
    document = json.loads(json.dumps(signed))
    document["created_at"] = value
    body = encode(device.sign_for_push(document, sent_at=now))

    assert post_bundle(body).status_code == 202


# Amounts and currencies -------------------------------------------------------------

@pytest.mark.parametrize("amount,code", [
    ("-1500", "invalid_amount"),
    ("0", "invalid_amount"),
    ("0000", "invalid_amount"),
    ("abc", "invalid_amount"),
    ("1e3", "invalid_amount"),
    ("+1500", "invalid_amount"),
    ("1,500", "invalid_amount"),
    (" 1500", "invalid_amount"),
    ("1500.", "invalid_amount"),
    (".5", "invalid_amount"),
    ("NaN", "invalid_amount"),
    ("Infinity", "invalid_amount"),
    ("1234567890123456", "invalid_amount"),  # 16 integer digits
    ("1500.5", "too_many_decimals"),  # XOF has no decimals
    ("1500.00", "too_many_decimals"),
    (1500, "invalid_type"),
    (-1500, "invalid_type"),
])
def test_bad_xof_amount_is_400(rejects, signed, amount, code):
    rejects(with_change(signed, ("transactions", 0, "amount"), amount), path="$.transactions[0].amount", code=code)


@pytest.mark.parametrize("amount,code", [("0.00", "invalid_amount"), ("12.345", "too_many_decimals")])
def test_bad_ghs_amount_is_400(rejects, signed, amount, code):
    document = json.loads(json.dumps(signed))
    document["transactions"][0].update(currency="GHS", amount=amount)

    rejects(encode(document), path="$.transactions[0].amount", code=code)


@pytest.mark.parametrize("currency,code", [("xof", "invalid_format"), ("XO", "invalid_format"),
                                           ("ABC", "unsupported_currency"), ("", "blank")])
def test_bad_currency_is_400(rejects, signed, currency, code):
    rejects(with_change(signed, ("transactions", 0, "currency"), currency), path="$.transactions[0].currency",
            code=code)


@pytest.mark.parametrize("value", ["RSA", "ed25519", "ES384", "none"])
def test_bad_signature_algorithm_is_400(rejects, signed, value):
    rejects(with_change(signed, ("signature", "alg"), value), path="$.signature.alg", code="invalid_choice")


@pytest.mark.parametrize("value", ["not base64!", "c2ln", "%" * 60])
def test_bad_signature_value_is_400(rejects, signed, value):
    rejects(with_change(signed, ("signature", "value"), value), path="$.signature.value", code="invalid_format")


# Sequence --------------------------------------------------------------------------

@pytest.mark.parametrize("value", [0, -1, 2**53, 10**30])
def test_sequence_out_of_range_is_400(rejects, signed, value):
    rejects(with_change(signed, ("sequence",), value), path="$.sequence", code="out_of_range")


def test_sequence_written_as_huge_exponent_is_400(rejects, signed):
    # Python reads 1e400 as infinity, a float, so it is not an integer.
    body = encode(signed).replace(f'"sequence": {signed["sequence"]}'.encode(), b'"sequence": 1e400', 1)

    rejects(body, path="$.sequence", code="invalid_type")


def test_largest_sequence_is_accepted(post_bundle, signed, device, now):
    document = json.loads(json.dumps(signed))
    document["sequence"] = 2**53 - 1
    body = encode(device.sign_for_push(document, sent_at=now))

    assert post_bundle(body).status_code == 202


# Transaction count -----------------------------------------------------------------

def test_empty_transactions_is_400(rejects, signed):
    rejects(with_change(signed, ("transactions",), []), path="$.transactions", code="empty")


def many_transactions(device, count, *, now, amount="1500"):
    transactions = [device.transaction(amount=amount, sender="+221770000001", receiver="+221770000002",
                                       initiated_at=now - timedelta(hours=2) + timedelta(seconds=i))
                    for i in range(count)]
    bundle = device.seal(transactions, created_at=now - timedelta(minutes=1))
    return device.sign_for_push(bundle, sent_at=now)


def test_more_transactions_than_maximum_is_400(rejects, device, now):
    assert settings.OFFLINE["MAX_TRANSACTIONS_PER_BUNDLE"] == 500
    document = many_transactions(device, 501, now=now)

    answer = rejects(encode(document), path="$.transactions", code="too_many")

    assert "500" in answer["errors"][0]["message"]
    assert "501" in answer["errors"][0]["message"]


def test_maximum_transactions_of_largest_amount_are_stored(post_bundle, device, now):
    document = many_transactions(device, 500, now=now, amount="999999999999999")

    response = post_bundle(encode(document))

    assert response.status_code == 202, response.content
    assert Transaction.objects.filter(bundle_id=document["bundle_id"]).count() == 500


def test_every_error_is_listed_with_its_path(rejects, signed):
    document = json.loads(json.dumps(signed))
    document["sequence"] = "1"
    document["transactions"][0]["amount"] = "-1"
    document["transactions"][1]["currency"] = "ABC"
    document["signature"]["alg"] = "RSA"

    answer = rejects(encode(document), path="$.sequence", code="invalid_type")

    paths = {error["path"] for error in answer["errors"]}
    assert paths == {"$.sequence", "$.transactions[0].amount", "$.transactions[1].currency", "$.signature.alg"}
    assert "4" in answer["detail"]


# Device registration ---------------------------------------------------------------

@pytest.fixture
def register(api_client, pay_admin_token):
    def post(body: bytes, **headers):
        return api_client.generic("POST", "/offline/devices", body, content_type="application/json",
                                  HTTP_AUTHORIZATION=f"Bearer {pay_admin_token}", **headers)

    return post


@pytest.fixture
def registration():
    return DeviceIdentity(device_id="DEVICE_NEW").registration()


def assert_no_device_stored():
    assert not Device.objects.filter(device_id="DEVICE_NEW").exists()
    assert not AuditLog.objects.filter(action="device_registered").exists()


@pytest.mark.parametrize("field,value", [(field, 42) for field in ("device_id", "tenant_type", "tenant_id",
                                                                   "pubkey_pem", "country")]
                         + [("tenant_id", value) for value in (4.2, True, ["x"], {"x": 1})], ids=str)
def test_registration_wrong_type_is_400(register, registration, field, value):
    registration[field] = value

    response = register(json.dumps(registration).encode())

    assert response.status_code == 400, response.content
    assert f"$.{field}" in [error["path"] for error in response.json()["errors"]]
    assert_no_device_stored()


@pytest.mark.parametrize("field,character", [(field, "\u0000") for field in ("device_id", "tenant_id", "pubkey_pem",
                                                                            "country")]
                         + [("tenant_id", "\ud800"), ("pubkey_pem", "\ud800"), ("tenant_id", "\u001b")], ids=str)
def test_registration_control_character_is_400(register, registration, field, character):
    registration[field] = registration[field][:-1] + character

    response = register(json.dumps(registration).encode("ascii"))

    assert response.status_code == 400, response.content
    assert f"$.{field}" in [error["path"] for error in response.json()["errors"]]
    assert_no_device_stored()


@pytest.mark.parametrize("field", ["device_id", "tenant_type", "tenant_id", "pubkey_pem", "country"])
def test_registration_missing_field_is_400(register, registration, field):
    del registration[field]

    response = register(json.dumps(registration).encode())

    assert response.status_code == 400
    assert f"$.{field}" in [error["path"] for error in response.json()["errors"]]
    assert_no_device_stored()


@pytest.mark.parametrize("body", [b"{not json", b"[]", b'"DEVICE_NEW"', b"\xff\xfe", b"[" * 10_000])
def test_registration_unparseable_body_is_400(register, body):
    response = register(body)

    assert response.status_code == 400, response.content
    assert response.json()["detail"]
    assert_no_device_stored()


def test_registration_huge_body_is_413(register, registration):
    registration["tenant_id"] = "x" * (3 * 1024 * 1024)

    response = register(json.dumps(registration).encode())

    assert response.status_code == 413, response.content
    assert response.json()["errors"][0]["path"] == "$"
    assert str(settings.API_MAX_BODY_BYTES) in response.json()["detail"]
    assert_no_device_stored()


def test_registration_duplicate_key_is_400(register, registration):
    body = json.dumps(registration).replace('{"device_id"', '{"country": "ML", "device_id"', 1)

    response = register(body.encode())

    assert response.status_code == 400
    assert response.json()["errors"][0]["code"] == "duplicate_key"
    assert '"country"' in response.json()["detail"]
    assert_no_device_stored()


def test_registration_huge_pem_is_400(register, registration):
    registration["pubkey_pem"] = "-----BEGIN PUBLIC KEY-----\n" + "A" * 5000 + "\n-----END PUBLIC KEY-----\n"

    response = register(json.dumps(registration).encode())

    assert response.status_code == 400
    assert [error["path"] for error in response.json()["errors"]] == ["$.pubkey_pem"]
    assert_no_device_stored()


def test_registration_wrong_content_type_is_415(register, registration, api_client, pay_admin_token):
    response = api_client.generic("POST", "/offline/devices", json.dumps(registration), content_type="text/plain",
                                  HTTP_AUTHORIZATION=f"Bearer {pay_admin_token}")

    assert response.status_code == 415
    assert_no_device_stored()
