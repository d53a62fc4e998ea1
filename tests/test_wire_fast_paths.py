"""The fast paths of the push parser must return the same results as the full checks and rfc8785."""

import hashlib
import json
from datetime import timedelta

import pytest
import rfc8785

from bundles.client import encode
from bundles.wire import BundleFormatError, _Checker, _valid_transactions, jcs_dumps, parse_bundle

pytestmark = pytest.mark.django_db

JCS_CASES = [
    {"b": 1, "a": "x", "c": None, "d": True, "e": False},
    {"text": "Riz 25 kg, boutique Aïda", "emoji": "paid \U0001F600", "cjk": "\u4e2d\u6587"},
    {"escapes": "quote \" backslash \\ slash / tab \t newline \n return \r bell \x07 nul \x00 del \x7f"},
    {"separators": "\u2028 \u2029", "private": "\ue000", "bom": "\ufeff"},
    {"nested": [{"z": [1, [2, [3, {}]]], "a": []}], "empty": {}},
    {"limits": [2**53 - 1, -(2**53 - 1), 0, -1]},
    {"sequence": 42, "transactions": [{"amount": "1500", "local_id": "tx-1"}] * 3},
    # Not plain JSON: these take the rfc8785 path, and must still be exact.
    {"\ue000": 1, "\U00010000": 2, "é": 3},
    {"float": 1.5, "small": 1e-7, "large": 1e21},
    {"too_big": 2**53},
    [1, "two", {"three": 3.0}],
    "a string",
]


@pytest.mark.parametrize("value", JCS_CASES)
def test_jcs_dumps_matches_rfc8785(value):
    try:
        expected = rfc8785.dumps(value)
    except rfc8785.CanonicalizationError as error:
        with pytest.raises(type(error)):
            jcs_dumps(value)
        return

    assert jcs_dumps(value) == expected


def test_jcs_dumps_rejects_lone_surrogate():
    with pytest.raises(rfc8785.CanonicalizationError):
        jcs_dumps({"note": "\ud800"})


def test_parsed_bundle_signs_rfc8785_bytes(make_device, sample_bundle, now):
    device = make_device(register=False)
    bundle = sample_bundle(device, 3)
    bundle["transactions"][0]["note"] = "Riz \"25 kg\"\\ boutique Aïda \U0001F600 \u00e9"
    bundle["transactions"][1]["note"] = None
    document = device.sign_for_push(bundle, sent_at=now)

    parsed = parse_bundle(encode(document))

    unsigned = {key: value for key, value in document.items() if key != "signature"}
    stable = {key: value for key, value in unsigned.items() if key != "sent_at"}
    assert parsed.signed_bytes == rfc8785.dumps(unsigned)
    assert parsed.content_hash == hashlib.sha256(rfc8785.dumps(stable)).hexdigest()


GOOD_TRANSACTION = {"local_id": "tx-000001", "type": "p2p", "amount": "1500", "currency": "XOF",
                    "sender": "+221770000001", "receiver": "+221770000002", "initiated_at": "2026-12-04T09:58:00Z"}

TRANSACTION_VARIANTS = [
    {},
    {"note": "Riz 25 kg"},
    {"note": ""},
    {"note": None},
    {"note": "x" * 140},
    {"note": "x" * 141},
    {"note": "tab\tinside"},
    {"note": "line\u2028separator"},
    {"note": "lone \ud800"},
    {"note": 5},
    {"amount": "12.50", "currency": "GHS"},
    {"amount": "12.505", "currency": "GHS"},
    {"amount": "12.5"},
    {"amount": "0"},
    {"amount": "0.00", "currency": "USD"},
    {"amount": "1500\n"},
    {"amount": " 1500"},
    {"amount": 1500},
    {"amount": "1" * 17},
    {"currency": "xof"},
    {"currency": "ABC"},
    {"local_id": "a" * 64},
    {"local_id": "a" * 65},
    {"local_id": "tx-1\n"},
    {"local_id": "-starts-with-dash"},
    {"type": "merchant_payment"},
    {"type": "P2P"},
    {"sender": "s" * 65},
    {"receiver": ""},
    {"receiver": None},
    {"sender": None, "amount": None},
    {"initiated_at": "2026-12-04T09:58:00.123456789+01:00"},
    {"initiated_at": "2026-02-30T09:58:00Z"},
    {"initiated_at": "2026-12-04 09:58:00Z"},
    {"initiated_at": "2026-12-04T09:58:00Z\n"},
    {"initiated_at": "2026-12-04T09:58:00"},
    {"initiated_at": "2026-12-04T09:58:00.1234567-00:00"},
    {"initiated_at": "0001-01-01T00:00:00+01:00"},
    {"initiated_at": "9999-12-31T23:59:59-01:00"},
    {"initiated_at": "\u0662\u0660\u0662\u0666-12-04T09:58:00Z"},
    {"initiated_at": "2026-12-04t09:58:00z"},
    {"initiated_at": "2026-12-04T09:58:00+24:00"},
    {"local_id": "tx\x1fp2p"},
    {"sender": 221770000001},
    {"extra": "field"},
]

# Valid transactions that the fast path leaves to the full check, which accepts them.
FULL_CHECK_ONLY = [{"initiated_at": "2026-12-04t09:58:00z"}]


@pytest.mark.parametrize("change", TRANSACTION_VARIANTS, ids=lambda change: json.dumps(change)[:40])
def test_fast_transaction_check_agrees_with_full_check(change):
    value = {**GOOD_TRANSACTION, **change}
    checker = _Checker()

    full = checker.transaction("$.transactions[0]", 0, value)
    fast = _valid_transactions([value])
    fast = fast[0] if fast is not None else None

    assert (full is None) == bool(checker.errors)
    if change in FULL_CHECK_ONLY:
        assert fast is None
        assert full is not None
    else:
        assert fast == full


@pytest.mark.parametrize("missing", sorted(GOOD_TRANSACTION))
def test_fast_transaction_check_missing_field(missing):
    value = {key: item for key, item in GOOD_TRANSACTION.items() if key != missing}

    assert _valid_transactions([value]) is None


def push_body(api_client, body: bytes):
    return api_client.generic("POST", "/offline/bundles", body, content_type="application/json")


def test_amount_with_trailing_newline_is_400(make_device, sample_bundle, api_client, now):
    device = make_device()
    bundle = sample_bundle(device, 2)
    bundle["transactions"][1]["amount"] = "1500\n"

    response = push_body(api_client, encode(device.sign_for_push(bundle, sent_at=now)))

    assert response.status_code == 400
    assert response.json()["errors"][0]["path"] == "$.transactions[1].amount"
    assert response.json()["errors"][0]["code"] == "invalid_amount"


def test_lone_surrogate_in_note_is_400(make_device, sample_bundle, api_client, now):
    device = make_device()
    bundle = sample_bundle(device, 1)
    document = device.sign_for_push(bundle, sent_at=now)
    body = json.dumps(document).replace('"local_id"', '"note": "\\ud800 alone", "local_id"', 1).encode()

    response = push_body(api_client, body)

    assert response.status_code == 400
    assert response.json()["errors"][0]["path"] == "$.transactions[0].note"
    assert response.json()["errors"][0]["code"] == "invalid_character"


@pytest.mark.parametrize("depth", [9, 50_000])
def test_deep_nesting_is_too_deep(depth):
    body = ('{"bundle_id": "b1", "extra": ' + "[" * (depth - 1) + "]" * (depth - 1) + "}").encode()

    with pytest.raises(BundleFormatError) as error:
        parse_bundle(body)

    assert error.value.errors[0]["code"] == "too_deep"


def test_eight_levels_are_allowed_by_the_depth_check():
    body = ('{"bundle_id": "b1", "extra": ' + "[" * 7 + "]" * 7 + "}").encode()

    with pytest.raises(BundleFormatError) as error:
        parse_bundle(body)

    assert "too_deep" not in {problem["code"] for problem in error.value.errors}


def test_duplicate_key_is_rejected(make_device, sample_bundle, now):
    device = make_device(register=False)
    body = encode(device.sign_for_push(sample_bundle(device, 1), sent_at=now))
    body = body.replace(b'"type": "p2p"', b'"type": "p2p", "type": "p2p"', 1)

    with pytest.raises(BundleFormatError) as error:
        parse_bundle(body)

    assert error.value.errors[0]["code"] == "duplicate_key"


def test_hundred_transactions_parse(make_device, sample_bundle, now):
    device = make_device(register=False)
    bundle = sample_bundle(device, 100, start=now - timedelta(hours=3))

    parsed = parse_bundle(encode(device.sign_for_push(bundle, sent_at=now)))

    assert [tx.position for tx in parsed.transactions] == list(range(100))
    assert parsed.transactions[99].local_id == bundle["transactions"][99]["local_id"]


def test_null_required_field_is_400(make_device, sample_bundle, api_client, now):
    device = make_device()
    bundle = sample_bundle(device, 1)
    bundle["transactions"][0]["receiver"] = None
    bundle["sequence"] = None

    response = push_body(api_client, encode(device.sign_for_push(bundle, sent_at=now)))

    assert response.status_code == 400
    paths = {error["path"]: error["code"] for error in response.json()["errors"]}
    assert paths == {"$.sequence": "null", "$.transactions[0].receiver": "null"}


def test_deep_top_level_array_is_too_deep():
    with pytest.raises(BundleFormatError) as error:
        parse_bundle(b"[" * 20 + b"]" * 20)

    assert error.value.errors[0]["code"] == "too_deep"
