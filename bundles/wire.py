"""Parse and check a pushed bundle against the wire contract, version 1.

Every problem is collected with its JSON path, so a device developer gets all of them
in one 400 response. Nothing here touches the database.
"""

import hashlib
import json
import re
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation

import rfc8785
from django.conf import settings
from django.utils.functional import Promise
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from devices.models import KeyAlgorithm

# Minor-unit digits of the currencies that West African devices use (ISO 4217).
CURRENCY_EXPONENTS = {
    "XOF": 0, "XAF": 0, "GNF": 0, "GHS": 2, "NGN": 2, "GMD": 2, "SLE": 2, "LRD": 2,
    "CVE": 2, "MRU": 2, "EUR": 2, "USD": 2,
}

TOP_LEVEL_FIELDS = {"bundle_id", "device_id", "sequence", "created_at", "sent_at", "transactions", "signature"}
TRANSACTION_REQUIRED = {"local_id", "type", "amount", "currency", "sender", "receiver", "initiated_at"}
TRANSACTION_FIELDS = TRANSACTION_REQUIRED | {"note"}
SIGNATURE_FIELDS = {"alg", "value"}

# The syntax of each field, compiled alone below and joined into TRANSACTION_FIELDS_SYNTAX.
IDENTIFIER_SYNTAX = r"[A-Za-z0-9][A-Za-z0-9_.:\-]{0,63}"
PARTY_SYNTAX = r"[A-Za-z0-9+_.:@\-]{1,64}"
TRANSACTION_TYPE_SYNTAX = r"[a-z][a-z0-9_]{0,31}"
CURRENCY_SYNTAX = r"[A-Z]{3}"
# 15 integer digits, so that the total of a full bundle still fits the NUMERIC(20, 2) columns.
AMOUNT_SYNTAX = r"[0-9]{1,15}(?:\.[0-9]{1,4})?"
RFC3339_SYNTAX = r"(\d{4}-\d{2}-\d{2})[Tt](\d{2}:\d{2}:\d{2})(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})"

IDENTIFIER = re.compile(f"^{IDENTIFIER_SYNTAX}$")
PARTY = re.compile(f"^{PARTY_SYNTAX}$")
TRANSACTION_TYPE = re.compile(f"^{TRANSACTION_TYPE_SYNTAX}$")
CURRENCY = re.compile(f"^{CURRENCY_SYNTAX}$")
AMOUNT = re.compile(f"^{AMOUNT_SYNTAX}$")
RFC3339 = re.compile(f"^{RFC3339_SYNTAX}$")
# The fields of a transaction joined by U+001F, which none of their syntaxes allows, so
# that one fullmatch checks them all: local_id, type, currency, sender, receiver, amount
# and initiated_at, in that order.
FIELD_SEPARATOR = "\x1f"
TRANSACTION_FIELDS_SYNTAX = re.compile(FIELD_SEPARATOR.join([
    IDENTIFIER_SYNTAX, TRANSACTION_TYPE_SYNTAX, CURRENCY_SYNTAX, PARTY_SYNTAX, PARTY_SYNTAX, AMOUNT_SYNTAX,
    RFC3339_SYNTAX]))
BASE64 = re.compile(r"^[A-Za-z0-9+/]{40,200}={0,2}$")
# Lazy, because a valid bundle checks these patterns without reading the hints.
IDENTIFIER_HINT = gettext_lazy("Use 1 to 64 letters, digits and . _ : - characters, starting with a letter or digit.")
BASE64_HINT = gettext_lazy("Expected a base64 signature.")
MAX_SEQUENCE = 2**53 - 1  # The largest integer that every JSON implementation reads exactly.
FORBIDDEN_CHARACTERS = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]")
# Unpaired surrogates (from escapes such as "\\ud800") have no UTF-8 form, so neither
# RFC 8785 nor PostgreSQL can take them.
SURROGATES = re.compile(r"[\ud800-\udfff]")


class PayloadTooLarge(Exception):
    def __init__(self, size: int, limit: int):
        super().__init__(f"{size} bytes > {limit}")
        self.size = size
        self.limit = limit


class BundleFormatError(Exception):
    """A malformed bundle; `errors` lists each problem with its JSON path."""

    def __init__(self, errors: list[dict]):
        super().__init__(f"{len(errors)} error(s)")
        self.errors = errors


@dataclass
class ParsedTransaction:
    position: int
    local_id: str
    type: str
    amount: Decimal
    currency: str
    sender: str
    receiver: str
    initiated_at: datetime
    note: str


@dataclass
class ParsedBundle:
    document: dict
    bundle_id: str
    device_id: str
    sequence: int
    created_at: datetime
    sent_at: datetime
    transactions: list[ParsedTransaction]
    signature_alg: str
    signature_value: str
    signed_bytes: bytes
    content_hash: str
    # The body as pushed. Stored as the payload: the checks leave only known members and
    # strings without NUL, so PostgreSQL reads it as the same jsonb value as the document,
    # without encoding the document again.
    json_text: str

    @property
    def total_amount(self) -> Decimal:
        return sum((tx.amount for tx in self.transactions), Decimal(0))


def canonical_bytes(document: dict) -> bytes:
    """Return the RFC 8785 (JCS) bytes that the device signs: the document without `signature`."""
    return jcs_dumps({key: value for key, value in document.items() if key != "signature"})


def content_hash(document: dict) -> str:
    """Hash the bundle content that stays the same across pushes (no `sent_at`, no `signature`)."""
    stable = {key: value for key, value in document.items() if key not in ("sent_at", "signature")}
    return hashlib.sha256(jcs_dumps(stable)).hexdigest()


def jcs_dumps(value) -> bytes:
    """Serialize `value` as RFC 8785 (JCS) bytes, with the C JSON encoder where that is exact.

    For ASCII object keys, strings, booleans, null and integers within +-(2**53 - 1),
    json.dumps with sorted keys, no spaces and ensure_ascii=False writes the same bytes as
    RFC 8785: both escape only the quote, the backslash and U+0000..U+001F, with lowercase
    \\u00xx, and ASCII keys sort the same by code point as by UTF-16 code unit. Anything
    else (floats, non-ASCII keys, large integers, lone surrogates) goes through the rfc8785
    package, which is about 20 times slower in pure Python but handles every case.
    """
    if _is_plain_json(value):
        try:
            return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode("utf-8")
        except UnicodeEncodeError:
            pass  # A lone surrogate: rfc8785 raises its own error below.
    return rfc8785.dumps(value)


def _checked_signature_input(document: dict) -> tuple[bytes, str]:
    """Return the signed bytes and the content hash of a document that passed the checks.

    Such a document is plain JSON as jcs_dumps defines it: ASCII keys from the contract,
    strings without lone surrogates, one integer below 2**53 and null notes. That skips
    the type walk, which costs as much as the encoding.

    The content hash covers the signed bytes without the sent_at member. With sorted keys
    that member follows bundle_id, created_at and device_id, whose checked values contain
    no quote, so it is the first `,"sent_at":` of the bytes. Removing it there saves encoding
    the transactions a second time.
    """
    unsigned = {key: value for key, value in document.items() if key != "signature"}
    signed = json.dumps(unsigned, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode("utf-8")
    sent_at_member = b',"sent_at":' + json.dumps(document["sent_at"], ensure_ascii=False).encode("utf-8")
    stable = signed.replace(sent_at_member, b"", 1)
    return signed, hashlib.sha256(stable).hexdigest()


def _is_plain_json(value) -> bool:
    pending = [value]
    while pending:
        item = pending.pop()
        kind = type(item)
        if kind is str or item is None or kind is bool:
            continue
        if kind is int:
            if not -MAX_SEQUENCE <= item <= MAX_SEQUENCE:
                return False
        elif kind is dict:
            for key in item:
                if type(key) is not str or not key.isascii():
                    return False
            pending.extend(item.values())
        elif kind is list:
            pending.extend(item)
        else:
            return False
    return True


def parse_bundle(body: bytes) -> ParsedBundle:
    """Parse a request body into a ParsedBundle, or raise PayloadTooLarge or BundleFormatError."""
    limit = settings.OFFLINE["MAX_BUNDLE_BYTES"]
    if len(body) > limit:
        raise PayloadTooLarge(len(body), limit)

    document = load_json(body)
    checker = _Checker()
    parsed = checker.check_bundle(document, json_text=body.decode("utf-8"))
    if checker.errors:
        # A document that passes the checks is three levels deep by construction, so
        # the nesting is only measured on the error path, where it takes precedence.
        _check_nesting(document)
        raise BundleFormatError(checker.errors)
    return parsed


def load_json(body: bytes) -> dict:
    """Decode a bundle body: strict JSON (see decode_json) whose top level is an object."""
    document = decode_json(body)
    if not isinstance(document, dict):
        _check_nesting(document)
        raise BundleFormatError([_error("$", "invalid_type", _("The bundle must be a JSON object."))])
    return document


def decode_json(body: bytes):
    """Decode strict JSON: UTF-8, no duplicate keys, no NaN or Infinity, bounded nesting."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise BundleFormatError([_error("$", "invalid_encoding",
                                        _("The body is not valid UTF-8 (byte %(position)d).")
                                        % {"position": error.start})]) from None

    limit = settings.OFFLINE["MAX_JSON_DEPTH"]
    try:
        # The C decoder raises RecursionError at the interpreter's recursion limit (1,000
        # levels by default), so a deeply nested body cannot exhaust the stack.
        document = json.loads(text, object_pairs_hook=_reject_duplicate_keys, parse_constant=_reject_constant)
    except RecursionError:
        raise BundleFormatError([_error("$", "too_deep", _("JSON nesting is deeper than %(depth)d levels; at most "
                                                            "%(limit)d are allowed.")
                                        % {"depth": sys.getrecursionlimit(), "limit": limit})]) from None
    except _DuplicateKey as error:
        raise BundleFormatError([_error("$", "duplicate_key", _("The key %(key)s appears twice in one object.")
                                        % {"key": json.dumps(error.key)})]) from None
    except _NonFiniteNumber as error:
        raise BundleFormatError([_error("$", "invalid_number", _("%(value)s is not a JSON number.")
                                        % {"value": error.value})]) from None
    except json.JSONDecodeError as error:
        raise BundleFormatError([_error("$", "invalid_json", _("Invalid JSON at line %(line)d, column "
                                                               "%(column)d: %(message)s.")
                                        % {"line": error.lineno, "column": error.colno, "message": error.msg})]) from None
    except ValueError:
        # Python refuses to convert integers of more than 4300 digits (sys.int_info).
        raise BundleFormatError([_error("$", "invalid_number", _("A number in the body has too many digits."))]) from None
    return document


def _check_nesting(document) -> None:
    """Raise BundleFormatError if the decoded document nests deeper than MAX_JSON_DEPTH."""
    limit = settings.OFFLINE["MAX_JSON_DEPTH"]
    depth = _max_nesting(document)
    if depth > limit:
        raise BundleFormatError([_error("$", "too_deep", _("JSON nesting is %(depth)d levels deep; at most "
                                                            "%(limit)d are allowed.")
                                        % {"depth": depth, "limit": limit})])


class _DuplicateKey(ValueError):
    def __init__(self, key):
        super().__init__(key)
        self.key = key


class _NonFiniteNumber(ValueError):
    def __init__(self, value):
        super().__init__(value)
        self.value = value


def _reject_duplicate_keys(pairs):
    result = dict(pairs)
    if len(result) != len(pairs):
        seen = set()
        for key, _value in pairs:
            if key in seen:
                raise _DuplicateKey(key)
            seen.add(key)
    return result


def _reject_constant(value):
    raise _NonFiniteNumber(value)


def _max_nesting(document) -> int:
    """Return the deepest nesting of arrays and objects in a decoded document (a scalar is 0)."""
    deepest = 0
    pending = [(document, 1)]
    while pending:
        value, depth = pending.pop()
        if isinstance(value, dict):
            children = value.values()
        elif isinstance(value, list):
            children = value
        else:
            continue
        deepest = max(deepest, depth)
        pending.extend((child, depth + 1) for child in children if type(child) in (dict, list))
    return deepest


def _error(path: str, code: str, message: str) -> dict:
    return {"path": path, "code": code, "message": message}


class _Checker:
    """Collects every contract violation of one document with its JSON path."""

    def __init__(self):
        self.errors: list[dict] = []

    def add(self, path: str, code: str, message: str) -> None:
        self.errors.append(_error(path, code, message))

    def check_bundle(self, document: dict, *, json_text: str) -> ParsedBundle | None:
        self.check_members("$", document, required=TOP_LEVEL_FIELDS, allowed=TOP_LEVEL_FIELDS)

        bundle_id = self.identifier("$.bundle_id", document.get("bundle_id"))
        device_id = self.identifier("$.device_id", document.get("device_id"))
        sequence = self.sequence("$.sequence", document.get("sequence"))
        created_at = self.timestamp("$.created_at", document.get("created_at"))
        sent_at = self.timestamp("$.sent_at", document.get("sent_at"))
        alg, value = self.signature("$.signature", document.get("signature"))
        transactions = self.transactions("$.transactions", document.get("transactions"))

        if self.errors:
            return None

        signed_bytes, content_hash = _checked_signature_input(document)
        return ParsedBundle(
            document=document, bundle_id=bundle_id, device_id=device_id, sequence=sequence,
            created_at=created_at, sent_at=sent_at, transactions=transactions, signature_alg=alg,
            signature_value=value, signed_bytes=signed_bytes, content_hash=content_hash, json_text=json_text,
        )

    def check_members(self, path: str, obj: dict, *, required: set, allowed: set) -> None:
        for name in sorted(required - obj.keys()):
            self.add(f"{path}.{name}", "required", _("This field is required."))
        # The field checks read a null as a missing value, so a null in a required member
        # is refused here: it must not reach the database as NULL. A null optional member
        # (the note) counts as left out.
        for name in sorted(name for name in required & obj.keys() if obj[name] is None):
            self.add(f"{path}.{name}", "null", _("This field may not be null; give a value or leave it out."))
        for name in sorted(obj.keys() - allowed):
            self.add(f"{path}.{_path_name(name)}", "unknown_field", _("Unknown field; remove it."))

    def string(self, path: str, value, *, max_length: int, pattern: re.Pattern | None = None,
               pattern_hint: str | Promise = "") -> str | None:
        if value is None:
            return None
        if not isinstance(value, str):
            self.add(path, "invalid_type", _("Expected a string, got %(type)s.") % {"type": _json_type(value)})
            return None
        if FORBIDDEN_CHARACTERS.search(value):
            self.add(path, "invalid_character", _("Control characters, including NUL, are not allowed."))
            return None
        if SURROGATES.search(value):
            # JSON \ud800 escapes decode to code points that UTF-8, and so RFC 8785, cannot encode.
            self.add(path, "invalid_character", _("Unpaired UTF-16 surrogates are not allowed."))
            return None
        if len(value) > max_length:
            self.add(path, "too_long", _("At most %(limit)d characters are allowed, got %(length)d.")
                     % {"limit": max_length, "length": len(value)})
            return None
        if not value:
            self.add(path, "blank", _("This field may not be empty."))
            return None
        if pattern is not None and not pattern.match(value):
            self.add(path, "invalid_format", str(pattern_hint))
            return None
        return value

    def identifier(self, path: str, value) -> str | None:
        return self.string(path, value, max_length=64, pattern=IDENTIFIER, pattern_hint=IDENTIFIER_HINT)

    def sequence(self, path: str, value) -> int | None:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            self.add(path, "invalid_type", _("Expected an integer, got %(type)s.") % {"type": _json_type(value)})
            return None
        if not 1 <= value <= MAX_SEQUENCE:
            self.add(path, "out_of_range", _("Must be between 1 and %(max)d.") % {"max": MAX_SEQUENCE})
            return None
        return value

    def timestamp(self, path: str, value) -> datetime | None:
        text = self.string(path, value, max_length=40)
        if text is None:
            return None
        match = RFC3339.match(text)
        if not match:
            self.add(path, "invalid_timestamp", _("Expected an RFC 3339 timestamp with an offset, such as "
                                                  "2026-12-04T09:58:00Z."))
            return None
        date, time, fraction, offset = match.groups()
        fraction = (fraction or "")[:7]  # Python keeps microseconds: six digits after the dot.
        offset = "+00:00" if offset in ("Z", "z") else offset
        try:
            moment = datetime.fromisoformat(f"{date}T{time}{fraction}{offset}")
        except ValueError:
            self.add(path, "invalid_timestamp", _("This date or time does not exist."))
            return None
        try:
            # An offset can move a time out of years 1 to 9999 in UTC (0001-01-01T00:00:00+01:00),
            # which neither Python nor psycopg can read back.
            moment.astimezone(timezone.utc)
        except OverflowError:
            self.add(path, "invalid_timestamp", _("This timestamp is out of range."))
            return None
        return moment

    def signature(self, path: str, value) -> tuple[str | None, str | None]:
        if value is None:
            return None, None
        if not isinstance(value, dict):
            self.add(path, "invalid_type", _("Expected an object, got %(type)s.") % {"type": _json_type(value)})
            return None, None
        self.check_members(path, value, required=SIGNATURE_FIELDS, allowed=SIGNATURE_FIELDS)
        alg = self.string(f"{path}.alg", value.get("alg"), max_length=16)
        if alg is not None and alg not in KeyAlgorithm.values:
            self.add(f"{path}.alg", "invalid_choice", _("Expected Ed25519 or ES256."))
            alg = None
        signature = self.string(f"{path}.value", value.get("value"), max_length=200, pattern=BASE64,
                                pattern_hint=BASE64_HINT)
        return alg, signature

    def transactions(self, path: str, value) -> list[ParsedTransaction]:
        if value is None:
            return []
        if not isinstance(value, list):
            self.add(path, "invalid_type", _("Expected an array, got %(type)s.") % {"type": _json_type(value)})
            return []
        limit = settings.OFFLINE["MAX_TRANSACTIONS_PER_BUNDLE"]
        if not value:
            self.add(path, "empty", _("A bundle needs at least one transaction."))
            return []
        if len(value) > limit:
            self.add(path, "too_many", _("At most %(limit)d transactions per bundle, got %(count)d.")
                     % {"limit": limit, "count": len(value)})
            return []
        parsed = _valid_transactions(value)
        if parsed is not None:
            return parsed

        # Run every check again to name each problem with its path.
        parsed = []
        for position, item in enumerate(value):
            transaction = self.transaction(f"{path}[{position}]", position, item)
            if transaction is not None:
                parsed.append(transaction)
        return parsed

    def transaction(self, path: str, position: int, value) -> ParsedTransaction | None:
        if not isinstance(value, dict):
            self.add(path, "invalid_type", _("Expected an object, got %(type)s.") % {"type": _json_type(value)})
            return None
        errors_before = len(self.errors)
        self.check_members(path, value, required=TRANSACTION_REQUIRED, allowed=TRANSACTION_FIELDS)

        local_id = self.identifier(f"{path}.local_id", value.get("local_id"))
        tx_type = self.string(f"{path}.type", value.get("type"), max_length=32, pattern=TRANSACTION_TYPE,
                              pattern_hint=_("Use lower-case letters, digits and underscores, such as p2p."))
        currency = self.string(f"{path}.currency", value.get("currency"), max_length=3, pattern=CURRENCY,
                               pattern_hint=_("Expected an ISO 4217 code in capitals, such as XOF."))
        if currency is not None and currency not in CURRENCY_EXPONENTS:
            self.add(f"{path}.currency", "unsupported_currency", _("Unsupported currency %(currency)s.")
                     % {"currency": currency})
            currency = None
        amount = self.amount(f"{path}.amount", value.get("amount"), currency)
        party_hint = _("Use 1 to 64 characters: letters, digits and + _ . : @ -.")
        sender = self.string(f"{path}.sender", value.get("sender"), max_length=64, pattern=PARTY,
                             pattern_hint=party_hint)
        receiver = self.string(f"{path}.receiver", value.get("receiver"), max_length=64, pattern=PARTY,
                               pattern_hint=party_hint)
        initiated_at = self.timestamp(f"{path}.initiated_at", value.get("initiated_at"))
        note = ""
        if value.get("note") != "":  # An empty note is the same as no note.
            note = self.string(f"{path}.note", value.get("note"), max_length=settings.OFFLINE["MAX_NOTE_CHARS"])

        if len(self.errors) > errors_before:
            return None
        return ParsedTransaction(position=position, local_id=local_id, type=tx_type, amount=amount,
                                 currency=currency, sender=sender, receiver=receiver,
                                 initiated_at=initiated_at, note=note or "")

    def amount(self, path: str, value, currency: str | None) -> Decimal | None:
        if value is None:
            return None
        if not isinstance(value, str):
            self.add(path, "invalid_type", _("Expected a decimal string such as \"1500\", got %(type)s.")
                     % {"type": _json_type(value)})
            return None
        if not AMOUNT.fullmatch(value):  # match() would let "1500\n" through, as $ matches before a newline.
            self.add(path, "invalid_amount", _("Expected a positive decimal string such as \"1500\" or "
                                               "\"12.50\"."))
            return None
        try:
            amount = Decimal(value)
        except InvalidOperation:
            self.add(path, "invalid_amount", _("Not a decimal number."))
            return None
        if amount <= 0:
            self.add(path, "invalid_amount", _("The amount must be greater than zero."))
            return None
        if currency is not None:
            decimals = len(value.partition(".")[2])
            exponent = CURRENCY_EXPONENTS[currency]
            if decimals > exponent:
                self.add(path, "too_many_decimals", _("%(currency)s amounts have at most %(exponent)d decimals.")
                         % {"currency": currency, "exponent": exponent})
                return None
        return amount


def _valid_transactions(items: list) -> list[ParsedTransaction] | None:
    """Return the transactions if every field of every one is valid, else None.

    The fast path for the common case: the full-string match of the joined fields implies
    the type, length, character and emptiness checks of _Checker.transaction, which runs
    on None to report the problems. Both must accept exactly the same transactions.
    """
    join, fields_match, from_iso = FIELD_SEPARATOR.join, TRANSACTION_FIELDS_SYNTAX.fullmatch, datetime.fromisoformat
    note_limit = settings.OFFLINE["MAX_NOTE_CHARS"]
    parsed = []
    for position, value in enumerate(items):
        if type(value) is not dict or not TRANSACTION_REQUIRED <= value.keys() <= TRANSACTION_FIELDS:
            return None

        local_id, tx_type, currency = value["local_id"], value["type"], value["currency"]
        sender, receiver, amount_text = value["sender"], value["receiver"], value["amount"]
        initiated_text = value["initiated_at"]
        try:
            if not fields_match(join((local_id, tx_type, currency, sender, receiver, amount_text, initiated_text))):
                return None
        except TypeError:  # A field that is not a string.
            return None

        exponent = CURRENCY_EXPONENTS.get(currency)
        amount = Decimal(amount_text)
        if exponent is None or amount <= 0 or len(amount_text.partition(".")[2]) > exponent:
            return None

        # On a string that matches RFC3339, fromisoformat gives the same result as
        # _Checker.timestamp, or raises: for a lower-case t or z, a date that does not
        # exist, or a time outside years 1 to 9999 in UTC.
        try:
            initiated_at = from_iso(initiated_text)
            initiated_at.astimezone(timezone.utc)
        except (ValueError, OverflowError):
            return None

        note = value.get("note")
        if note is None:
            note = ""
        elif (type(note) is not str or len(note) > note_limit or FORBIDDEN_CHARACTERS.search(note)
              or SURROGATES.search(note)):
            return None

        parsed.append(ParsedTransaction(position, local_id, tx_type, amount, currency, sender, receiver,
                                        initiated_at, note))
    return parsed


def _json_type(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _path_name(name: str) -> str:
    if IDENTIFIER.match(name):
        return name
    return json.dumps(name)
