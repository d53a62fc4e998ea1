"""Device public keys and bundle signatures: Ed25519 and ES256 (ECDSA P-256 with SHA-256)."""

import base64
import binascii
import hashlib
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from .models import KeyAlgorithm

ES256_RAW_SIGNATURE_BYTES = 64


class InvalidPublicKey(ValueError):
    """The PEM text is not an Ed25519 or P-256 public key."""


@dataclass(frozen=True)
class PublicKey:
    algorithm: str
    key: ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey
    fingerprint: str


def load_public_key(pem: str) -> PublicKey:
    """Parse a PEM public key and return it with its algorithm; raise InvalidPublicKey otherwise."""
    if not isinstance(pem, str) or "-----BEGIN PUBLIC KEY-----" not in pem:
        raise InvalidPublicKey("expected a PEM block starting with -----BEGIN PUBLIC KEY-----")

    try:
        key = serialization.load_pem_public_key(pem.strip().encode("ascii"))
    except (ValueError, UnicodeEncodeError, TypeError) as error:
        raise InvalidPublicKey(f"the PEM text does not parse as a public key ({error.__class__.__name__})") from None

    if isinstance(key, ed25519.Ed25519PublicKey):
        algorithm = KeyAlgorithm.ED25519
    elif isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
        algorithm = KeyAlgorithm.ES256
    else:
        raise InvalidPublicKey("only Ed25519 and ECDSA P-256 keys are accepted")

    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return PublicKey(algorithm=str(algorithm), key=key, fingerprint=hashlib.sha256(der).hexdigest())


def verify_signature(public_key: PublicKey, algorithm: str, signature_b64: str, data: bytes) -> bool:
    """Return whether `signature_b64` signs `data` under `public_key` with `algorithm`.

    ES256 signatures are accepted in DER and in the raw 64-byte r||s form that Web Crypto
    produces. An algorithm that differs from the key's is a failed verification.
    """
    if algorithm != public_key.algorithm:
        return False

    try:
        signature = base64.b64decode(signature_b64, validate=True)
    except (binascii.Error, ValueError):
        return False

    try:
        if algorithm == KeyAlgorithm.ED25519:
            public_key.key.verify(signature, data)
        else:
            if len(signature) == ES256_RAW_SIGNATURE_BYTES:
                r = int.from_bytes(signature[:32], "big")
                s = int.from_bytes(signature[32:], "big")
                signature = encode_dss_signature(r, s)
            public_key.key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError):
        return False
    return True


# Device side: used by the simulator, the benchmarks and the tests. The server never
# receives a private key.

def generate_private_key(algorithm: str):
    if algorithm == KeyAlgorithm.ED25519:
        return ed25519.Ed25519PrivateKey.generate()
    if algorithm == KeyAlgorithm.ES256:
        return ec.generate_private_key(ec.SECP256R1())
    raise ValueError(f"unsupported algorithm {algorithm!r}: use Ed25519 or ES256")


def public_key_pem(private_key) -> str:
    return private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode("ascii")


def sign(private_key, data: bytes, *, raw_es256: bool = False) -> str:
    """Sign `data` and return the base64 signature; ES256 is DER unless `raw_es256`."""
    if isinstance(private_key, ed25519.Ed25519PrivateKey):
        return base64.b64encode(private_key.sign(data)).decode("ascii")

    der = private_key.sign(data, ec.ECDSA(hashes.SHA256()))
    if not raw_es256:
        return base64.b64encode(der).decode("ascii")

    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    r, s = decode_dss_signature(der)
    return base64.b64encode(r.to_bytes(32, "big") + s.to_bytes(32, "big")).decode("ascii")
