"""The test vectors of docs/protocol.md, read from the document itself so that the two cannot drift."""

import base64
import json
import re
from datetime import timedelta
from pathlib import Path

import pytest
import rfc8785
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from bundles.client import DeviceIdentity, encode
from bundles.models import Bundle
from bundles.wire import canonical_bytes, parse_bundle
from devices.keys import load_public_key, public_key_pem, verify_signature
from devices.models import KeyAlgorithm
from devices.services import register_device

PROTOCOL = Path(__file__).resolve().parent.parent / "docs" / "protocol.md"
FENCED_VECTOR = re.compile(r"^```\w+ (vector-[a-z0-9-]+)\n(.*?)\n```$", re.MULTILINE | re.DOTALL)


def read_vectors() -> dict[str, str]:
    vectors = {}
    for name, text in FENCED_VECTOR.findall(PROTOCOL.read_text(encoding="utf-8")):
        assert name not in vectors, f"{name} appears twice in {PROTOCOL}"
        vectors[name] = text
    return vectors


VECTORS = read_vectors()
BUNDLE = json.loads(VECTORS["vector-bundle"])
CANONICAL = bytes.fromhex("".join(VECTORS["vector-canonical-hex"].split()))
ED25519_KEY = ed25519.Ed25519PrivateKey.from_private_bytes(bytes.fromhex(VECTORS["vector-ed25519-seed"].strip()))
ES256_KEY = serialization.load_pem_private_key(VECTORS["vector-es256-private"].encode("ascii"), password=None)


def test_document_has_every_vector():
    assert set(VECTORS) == {
        "vector-bundle", "vector-canonical-text", "vector-canonical-hex", "vector-ed25519-seed",
        "vector-ed25519-public", "vector-ed25519-signature", "vector-es256-private", "vector-es256-public",
        "vector-es256-signature-der", "vector-es256-signature-raw"}


def test_canonical_bytes_match_rfc8785():
    assert CANONICAL == rfc8785.dumps(BUNDLE)
    assert CANONICAL == canonical_bytes(BUNDLE)
    assert CANONICAL == VECTORS["vector-canonical-text"].encode("utf-8")


def test_canonical_bytes_keep_non_ascii_note():
    assert "Riz 25 kg, boutique Aïda".encode("utf-8") in CANONICAL
    assert b"\\u" not in CANONICAL


def test_canonical_bytes_ignore_signature_member():
    signed = {**BUNDLE, "signature": {"alg": "Ed25519", "value": VECTORS["vector-ed25519-signature"].strip()}}

    assert canonical_bytes(signed) == CANONICAL


def test_vector_bundle_parses_without_errors():
    signed = {**BUNDLE, "signature": {"alg": "Ed25519", "value": VECTORS["vector-ed25519-signature"].strip()}}

    parsed = parse_bundle(json.dumps(signed, ensure_ascii=False).encode("utf-8"))

    assert parsed.signed_bytes == CANONICAL
    assert parsed.transactions[0].note == "Riz 25 kg, boutique Aïda"


def test_ed25519_public_key_matches_seed():
    assert public_key_pem(ED25519_KEY).strip() == VECTORS["vector-ed25519-public"].strip()
    assert load_public_key(VECTORS["vector-ed25519-public"]).algorithm == KeyAlgorithm.ED25519


def test_ed25519_signature_verifies_and_reproduces():
    public_key = load_public_key(VECTORS["vector-ed25519-public"])
    signature = VECTORS["vector-ed25519-signature"].strip()

    assert verify_signature(public_key, KeyAlgorithm.ED25519, signature, CANONICAL)
    assert base64.b64encode(ED25519_KEY.sign(CANONICAL)).decode("ascii") == signature


def test_es256_public_key_matches_private_key():
    assert public_key_pem(ES256_KEY).strip() == VECTORS["vector-es256-public"].strip()
    assert load_public_key(VECTORS["vector-es256-public"]).algorithm == KeyAlgorithm.ES256


@pytest.mark.parametrize("form", ["der", "raw"])
def test_es256_signature_verifies(form):
    public_key = load_public_key(VECTORS["vector-es256-public"])
    signature = VECTORS[f"vector-es256-signature-{form}"].strip()

    assert verify_signature(public_key, KeyAlgorithm.ES256, signature, CANONICAL)
    assert not verify_signature(public_key, KeyAlgorithm.ES256, signature, CANONICAL + b" ")
    assert not verify_signature(public_key, KeyAlgorithm.ED25519, signature, CANONICAL)


def test_es256_signature_reproduces_with_rfc6979():
    der = ES256_KEY.sign(CANONICAL, ec.ECDSA(hashes.SHA256(), deterministic_signing=True))
    r, s = decode_dss_signature(der)

    assert base64.b64encode(der).decode("ascii") == VECTORS["vector-es256-signature-der"].strip()
    raw = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    assert base64.b64encode(raw).decode("ascii") == VECTORS["vector-es256-signature-raw"].strip()


def test_es256_key_is_the_rfc6979_key():
    # RFC 6979 appendix A.2.5: the P-256 key and its SHA-256 signature of "sample".
    assert ES256_KEY.private_numbers().private_value == int(
        "C9AFA9D845BA75166B5C215767B1D6934E50C3DB36E89B127B8A622B120F6721", 16)
    r, s = decode_dss_signature(ES256_KEY.sign(b"sample", ec.ECDSA(hashes.SHA256(), deterministic_signing=True)))
    assert r == int("EFD48B2AACB6A8FD1140DD9CD45E81D69D2C877B56AAF991C34D0EA84EAF3716", 16)
    assert s == int("F7CB1C942D657C41D436C7A1B6E29F65F3E900DBB9AFF4064DC4AB2F843ACDA8", 16)


@pytest.mark.django_db
@pytest.mark.parametrize("algorithm,private_key", [(KeyAlgorithm.ED25519, ED25519_KEY),
                                                   (KeyAlgorithm.ES256, ES256_KEY)])
def test_vector_bundle_push_is_accepted(api_client, pay_admin, now, django_capture_on_commit_callbacks,
                                        algorithm, private_key):
    identity = DeviceIdentity(device_id=BUNDLE["device_id"], algorithm=algorithm, private_key=private_key)
    register_device(acting_user=pay_admin, **identity.registration())
    unsigned = {key: value for key, value in BUNDLE.items() if key != "sent_at"}

    # The vector's sent_at is a fixed past time that the clock skew check would reject,
    # so the test signs the vector bundle again with the vector key and the current time.
    document = identity.sign_for_push(unsigned, sent_at=now - timedelta(seconds=5))
    with django_capture_on_commit_callbacks(execute=True):
        response = api_client.generic("POST", "/offline/bundles", encode(document), content_type="application/json")

    assert response.status_code == 202, response.content
    stored = Bundle.objects.get(bundle_id=BUNDLE["bundle_id"])
    assert stored.signature_alg == algorithm
    assert stored.reason_code != "invalid_signature"


# Canonicalization cases typed in by hand: the sample of the RFC 8785 reference
# implementation (github.com/cyberphone/json-canonicalization), and key order and number
# forms as RFC 8785 defines them (UTF-16 code unit order, ECMAScript number formatting).

def test_rfc8785_sorts_keys_by_utf16_code_units():
    document = {"\u20ac": "Euro Sign", "\r": "Carriage Return", "\ufb33": "Hebrew Letter Dalet With Dagesh",
                "1": "One", "\U0001f600": "Emoji: Grinning Face", "\u0080": "Control",
                "\u00f6": "Latin Small Letter O With Diaeresis"}

    keys = list(json.loads(canonical_bytes(document)))

    # U+1F600 is the surrogate pair D83D DE00 in UTF-16, so it sorts before U+FB33.
    assert keys == ["\r", "1", "\u0080", "\u00f6", "\u20ac", "\U0001f600", "\ufb33"]


def test_rfc8785_sample_escapes_and_numbers():
    text = ('{"numbers": [1E30, 4.50, 6, 2e-3, 0.000000000000000000000000001], '
            '"escaping": "\\u20ac$\\u000F\\u000aA\'\\u0042\\u0022\\u005c\\\\\\"\\/", '
            '"other":  [null, true, false]}')

    canonical = canonical_bytes(json.loads(text))

    assert canonical == ('{"escaping":"\u20ac$\\u000f\\nA\'B\\"\\\\\\\\\\"/",'
                         '"numbers":[1e+30,4.5,6,0.002,1e-27],"other":[null,true,false]}').encode("utf-8")


@pytest.mark.parametrize("number,expected", [
    (0.0, b"0"),
    (-0.0, b"0"),
    (5e-324, b"5e-324"),
    (1.7976931348623157e308, b"1.7976931348623157e+308"),
    (9007199254740992.0, b"9007199254740992"),
    (295147905179352830000.0, b"295147905179352830000"),
    (1e21, b"1e+21"),
    (1e23, b"1e+23"),
    (0.000001, b"0.000001"),
    (1e-7, b"1e-7"),
    (333333333.33333329, b"333333333.3333333"),
])
def test_rfc8785_number_forms(number, expected):
    assert canonical_bytes({"n": number}) == b'{"n":' + expected + b"}"
