"""Seeded mutations of valid signed bundles, for the bad-input battery.

Each case starts from a bundle that a real device identity seals and signs. It then
breaks the bundle in one way: a removed field, a swapped type, a huge or tiny value, a Unicode edge
case, a NUL byte, deep nesting, a duplicate key, a wrong signature, a replay with a
changed field, or damage to the raw bytes. Some mutations re-sign the changed bundle
with the device key, so that they get past the signature check and reach storage.
The same seed always yields the same cases.
"""

import base64
import json
import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from bundles.client import DeviceIdentity, encode, rfc3339

JSON_CONTENT_TYPE = "application/json"


@dataclass
class Case:
    mutator: str
    body: bytes
    content_type: str = JSON_CONTENT_TYPE
    # Transactions in the document, which a 202 response must store.
    transactions: list = field(default_factory=list)


SWAP_VALUES = [None, True, False, 0, -1, 1.5, 10**30, "", "x", [], {}, [1, 2], {"a": 1}, "null", "[]"]

HUGE_STRINGS = ["A" * 65, "A" * 4096, "9" * 17, "9" * 400, "é" * 141, "𝕏" * 200]
HUGE_NUMBERS = [2**53, 2**63, 2**64, -(2**63), 10**400]
TINY_VALUES = [0, -1, "", " ", "0", "0.0", "0.0001", "00000", "-1", "+1", ".5", "1.", "1e3", "0x10"]
EDGE_TIMESTAMPS = ["0001-01-01T00:00:00+01:00", "0001-01-01T00:00:00Z", "9999-12-31T23:59:59-01:00",
                   "9999-12-31T23:59:59Z", "1970-01-01T00:00:00Z", "2026-02-30T10:00:00Z", "2026-13-01T10:00:00Z",
                   "2026-12-04T24:00:00Z", "2026-12-04T10:00:60Z", "2026-12-04T10:00:00+24:00",
                   "2026-12-04T10:00:00.1234567891Z", "2026-12-04 10:00:00Z", "2026-12-04T10:00:00"]
UNICODE_STRINGS = ["\u202eevil", "zero\u200bwidth", "e\u0301", "\u00e9", "🙂", "\ufeffbom", "line\u2028sep",
                   "\ud800", "\udfff", "Ω", "Ω", "１５００", "١٥٠٠", "ǅ", "\u0085", "\x7f", "ß" * 64,
                   "Riz 25 kg, boutique Aïda", "日本語", "\U0010ffff"]
NUL_STRINGS = ["\x00", "a\x00b", "DEVICE\x00_042", "\x00" * 64]
NOTES = ["Riz 25 kg, boutique Aïda", "🙂" * 140, "é" * 140, "e\u0301" * 70, "ﷺ" * 10, "\u202e" + "a" * 10,
         "ǅ" * 140, "日本語のメモ", "x" * 140, "\U0001f600\U0001f3fd"]
AMOUNTS = ["1", "9999999999999999", "0.5", "12.50", "1500", "0001500", "9999999999999999.99"]
CURRENCIES = ["XOF", "EUR", "GHS", "NGN", "XAF"]
BAD_CONTENT_TYPES = ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x",
                     "application/json; charset=latin-1", "application/jsonp", ""]


class BundleMutator:
    """Generate mutation cases from valid bundles of the given device identities."""

    def __init__(self, seed: int, devices: list[DeviceIdentity], now: datetime, prefix: str):
        self.random = random.Random(seed)
        self.devices = devices
        self.now = now
        self.prefix = prefix
        self.counter = 0
        self.mutators = [
            (self.remove_field, 8), (self.swap_type, 10), (self.huge_value, 8), (self.tiny_value, 8),
            (self.unicode_value, 8), (self.nul_byte, 5), (self.deep_nesting, 4), (self.duplicate_key, 5),
            (self.wrong_signature, 10), (self.replay_changed, 6), (self.raw_damage, 8), (self.content_type, 3),
            (self.resigned_edge_value, 10), (self.many_transactions, 2), (self.valid, 5),
        ]

    def cases(self, count: int):
        """Yield at least `count` cases; a replay yields its original push first."""
        functions = [function for function, _ in self.mutators]
        weights = [weight for _, weight in self.mutators]
        produced = 0
        while produced < count:
            function = self.random.choices(functions, weights)[0]
            for case in function():
                produced += 1
                yield case

    # Building blocks.

    def device(self) -> DeviceIdentity:
        return self.random.choice(self.devices)

    def fresh(self, device: DeviceIdentity | None = None, transactions: int | None = None) -> tuple:
        device = device or self.device()
        self.counter += 1
        count = transactions or self.random.randint(1, 3)
        start = self.now - timedelta(hours=1)
        items = [device.transaction(amount=self.random.choice(["1500", "250", "10000"]), sender="+221770000001",
                                    receiver="+221770000002", initiated_at=start + timedelta(minutes=i),
                                    note=self.random.choice([None, "Riz 25 kg"]))
                 for i in range(count)]
        sealed = device.seal(items, created_at=self.now - timedelta(minutes=1),
                             bundle_id=f"{self.prefix}-{self.counter:06d}", sequence=self.counter)
        return device, sealed

    def signed(self, device, sealed) -> dict:
        return device.sign_for_push(sealed, sent_at=self.now)

    def paths(self, document: dict) -> list[tuple]:
        """Every (container, key) in the document, top level, transactions and signature."""
        found = [(document, key) for key in document]
        for item in document.get("transactions", []):
            found += [(item, key) for key in item]
        found += [(document["signature"], key) for key in document["signature"]]
        return found

    def case(self, name, document, *, body=None, content_type=JSON_CONTENT_TYPE) -> Case:
        if body is None:
            body = encode_any(document)
        transactions = document.get("transactions", []) if isinstance(document, dict) else []
        return Case(name, body, content_type, transactions if isinstance(transactions, list) else [])

    # Mutators: each yields one or more cases.

    def valid(self):
        device, sealed = self.fresh()
        yield self.case("valid", self.signed(device, sealed))

    def remove_field(self):
        device, sealed = self.fresh()
        document = self.signed(device, sealed)
        container, key = self.random.choice(self.paths(document))
        del container[key]
        yield self.case(f"remove {key}", document)

    def swap_type(self):
        device, sealed = self.fresh()
        document = self.signed(device, sealed)
        container, key = self.random.choice(self.paths(document) + [(document, "transactions")])
        container[key] = self.random.choice(SWAP_VALUES)
        yield self.case(f"swap type of {key}", document)

    def huge_value(self):
        device, sealed = self.fresh()
        document = self.signed(device, sealed)
        container, key = self.random.choice(self.paths(document))
        container[key] = self.random.choice(HUGE_STRINGS + HUGE_NUMBERS)
        yield self.case(f"huge {key}", document)

    def tiny_value(self):
        device, sealed = self.fresh()
        document = self.signed(device, sealed)
        container, key = self.random.choice(self.paths(document))
        container[key] = self.random.choice(TINY_VALUES + EDGE_TIMESTAMPS)
        yield self.case(f"tiny {key}", document)

    def unicode_value(self):
        device, sealed = self.fresh()
        document = self.signed(device, sealed)
        container, key = self.random.choice(self.paths(document))
        container[key] = self.random.choice(UNICODE_STRINGS)
        yield self.case(f"unicode {key}", document)

    def nul_byte(self):
        device, sealed = self.fresh()
        document = self.signed(device, sealed)
        if self.random.random() < 0.5:
            container, key = self.random.choice(self.paths(document))
            container[key] = self.random.choice(NUL_STRINGS)
            yield self.case(f"NUL in {key}", document)
        else:
            body = bytearray(encode(document))
            body.insert(self.random.randrange(len(body)), 0)
            yield self.case("raw NUL byte", document, body=bytes(body))

    def deep_nesting(self):
        device, sealed = self.fresh()
        document = self.signed(device, sealed)
        depth = self.random.choice([9, 50, 1000, 100_000])
        opener, closer = self.random.choice([("[", "]"), ('{"a":', "}")])
        nested = opener * depth + "1" + closer * depth
        key = self.random.choice(["note", "sequence", "transactions", "signature"])
        text = encode(document).decode("utf-8")
        body = text[:-1] + f', "{key}_deep": {nested}' + "}"
        if key == "transactions":
            body = text.replace('"transactions": [', f'"transactions": [{nested}, ', 1)
        yield self.case(f"nesting {depth}", document, body=body.encode("utf-8"))

    def duplicate_key(self):
        device, sealed = self.fresh()
        document = self.signed(device, sealed)
        text = encode(document).decode("utf-8")
        key, value = self.random.choice([("bundle_id", '"other"'), ("device_id", '"DEVICE_999"'),
                                         ("sequence", "2"), ("signature", '{"alg": "Ed25519", "value": "AAAA"}')])
        if self.random.random() < 0.5:
            body = "{" + f'"{key}": {value}, ' + text[1:]
        else:
            body = text.replace('"amount": ', '"amount": "1", "amount": ', 1)
        yield self.case(f"duplicate {key}", document, body=body.encode("utf-8"))

    def wrong_signature(self):
        device, sealed = self.fresh()
        document = self.signed(device, sealed)
        value = document["signature"]["value"]
        raw = base64.b64decode(value)
        choice = self.random.randrange(8)
        if choice == 0:
            flipped = bytearray(raw)
            flipped[self.random.randrange(len(flipped))] ^= 1 << self.random.randrange(8)
            document["signature"]["value"] = base64.b64encode(bytes(flipped)).decode()
        elif choice == 1:
            other = DeviceIdentity(device_id=device.device_id, algorithm=device.algorithm)
            document = other.sign_for_push(sealed, sent_at=self.now)
        elif choice == 2:
            document["signature"]["alg"] = "ES256" if document["signature"]["alg"] == "Ed25519" else "Ed25519"
        elif choice == 3:
            document["signature"]["value"] = value[: self.random.randrange(len(value))]
        elif choice == 4:
            document["signature"]["value"] = base64.b64encode(self.random.randbytes(64)).decode()
        elif choice == 5:
            document["signature"]["value"] = base64.b64encode(self.random.randbytes(72)).decode()
        elif choice == 6:
            document["signature"]["value"] = value.rstrip("=") + "!!"
        else:
            document["signature"]["alg"] = self.random.choice(["RS256", "none", "ed25519", "HS256"])
        yield self.case(f"wrong signature {choice}", document)

    def replay_changed(self):
        """Push a valid bundle, then replay it with one field changed, re-signed or not."""
        device, sealed = self.fresh()
        original = self.signed(device, sealed)
        yield self.case("replay original", original)

        changed = json.loads(json.dumps(original))
        resign = self.random.random() < 0.5
        choice = self.random.randrange(6)
        if choice == 0:
            changed["transactions"][0]["amount"] = "999999"
        elif choice == 1:
            changed["transactions"][0]["receiver"] = "+221779999999"
        elif choice == 2:
            changed["sent_at"] = rfc3339(self.now + timedelta(seconds=30))
        elif choice == 3:
            changed["sequence"] = changed["sequence"] + 100000
        elif choice == 4:
            changed["transactions"].append(dict(changed["transactions"][0], local_id="tx-replayed"))
        else:
            changed = original
        if resign:
            unsigned = {key: value for key, value in changed.items() if key not in ("signature", "sent_at")}
            changed = device.sign_for_push(unsigned, sent_at=self.now + timedelta(seconds=45))
        yield self.case(f"replay changed {choice} resigned={resign}", changed)

    def raw_damage(self):
        device, sealed = self.fresh()
        document = self.signed(device, sealed)
        body = encode(document)
        choice = self.random.randrange(10)
        if choice == 0:
            body = body[: self.random.randrange(len(body))]
        elif choice == 1:
            damaged = bytearray(body)
            for _ in range(self.random.randint(1, 5)):
                damaged[self.random.randrange(len(damaged))] = self.random.randrange(256)
            body = bytes(damaged)
        elif choice == 2:
            body = body + self.random.choice([b"garbage", b"{}", b"\n\n", b"]"])
        elif choice == 3:
            body = b"\xef\xbb\xbf" + body
        elif choice == 4:
            body = json.dumps(document).encode("utf-16")
        elif choice == 5:
            body = body.replace(b"Riz", b"R\xc0\x80z").replace(b"+221", b"\xff221", 1)
        elif choice == 6:
            body = self.random.choice([b"", b" ", b"null", b"[]", b"123", b'"text"', b"true", b"{}"])
        elif choice == 7:
            body = body.replace(b'"1500"', b"1500").replace(b'"250"', b"NaN").replace(b'"10000"', b"Infinity")
        elif choice == 8:
            body = body.replace(b"{", b"{\n  ", 3)  # Whitespace only: the signed content is unchanged.
        else:
            body = body.decode("utf-8").encode("ascii", "backslashreplace")
        yield self.case(f"raw damage {choice}", document, body=body)

    def content_type(self):
        device, sealed = self.fresh()
        document = self.signed(device, sealed)
        yield self.case("content type", document, content_type=self.random.choice(BAD_CONTENT_TYPES))

    def resigned_edge_value(self):
        """Change a value to an edge case and re-sign it, so the bundle passes the signature check."""
        device, sealed = self.fresh()
        transaction = sealed["transactions"][0]
        choice = self.random.randrange(7)
        if choice == 0:
            transaction["note"] = self.random.choice(NOTES)
        elif choice == 1:
            transaction["amount"] = self.random.choice(AMOUNTS)
            transaction["currency"] = self.random.choice(CURRENCIES)
        elif choice == 2:
            transaction["initiated_at"] = self.random.choice(EDGE_TIMESTAMPS)
        elif choice == 3:
            sealed["created_at"] = self.random.choice(EDGE_TIMESTAMPS)
        elif choice == 4:
            sealed["sequence"] = self.random.choice([1, 2**53 - 1, 2**53, 0])
        elif choice == 5:
            transaction[self.random.choice(["sender", "receiver", "local_id", "type"])] = self.random.choice(
                UNICODE_STRINGS + ["a" * 64, "a" * 65, "+", "@", "p2p_" + "x" * 28])
        else:
            transaction["note"] = self.random.choice(UNICODE_STRINGS + NUL_STRINGS)
        sent_at = self.random.choice([self.now, self.now + timedelta(days=3), self.now - timedelta(days=30)])
        try:
            document = device.sign_for_push(sealed, sent_at=sent_at)
        except ValueError:
            # RFC 8785 cannot encode lone surrogates, so no device can sign them either:
            # the value goes out under a signature of other content.
            document = dict(sealed, sent_at=rfc3339(sent_at), signature={"alg": str(device.algorithm),
                                                                          "value": "A" * 86 + "=="})
        yield self.case(f"re-signed edge {choice}", document)

    def many_transactions(self):
        count = self.random.choice([499, 500, 501, 2000])
        device, sealed = self.fresh(transactions=1)
        template = sealed["transactions"][0]
        amount = self.random.choice(["9999999999999999", "9999999999999999.99", "1"])
        currency = "EUR" if "." in amount else "XOF"
        sealed["transactions"] = [dict(template, local_id=f"tx-{self.counter}-{i}", amount=amount, currency=currency)
                                  for i in range(count)]
        yield self.case(f"{count} transactions of {amount}", device.sign_for_push(sealed, sent_at=self.now))


def encode_any(document) -> bytes:
    """Encode like a device would; lone surrogates and huge numbers fall back to ASCII escapes."""
    try:
        return json.dumps(document, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(document).encode("utf-8")
