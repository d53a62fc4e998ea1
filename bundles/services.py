"""Bundle ingest: verify, store and acknowledge a pushed bundle in one database transaction."""

import functools
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone
from psycopg.types.json import Jsonb

from audit.models import AuditAction, AuditLog
from audit.services import record
from devices.keys import InvalidPublicKey, load_public_key, verify_signature
from devices.models import Device, DeviceStatus
from molam_offline.db import server_binding_cursor

from .models import Bundle, BundleStatus, Transaction, TransactionStatus
from .reasons import ReasonCode, reason_text
from .wire import ParsedBundle

logger = logging.getLogger(__name__)

# Devices.last_seen_at is kept to this precision.
LAST_SEEN_RESOLUTION = timedelta(minutes=1)


class BundleConflict(Exception):
    """The bundle_id is already stored with other content.

    `same_device_signed` is true when the conflicting push verifies against the key of
    the device that owns the stored bundle. Only then does the 409 response show its status.
    """

    def __init__(self, bundle: Bundle, *, same_device_signed: bool = False):
        super().__init__(bundle.bundle_id)
        self.bundle = bundle
        self.same_device_signed = same_device_signed


class RepeatSignatureInvalid(Exception):
    """A repeat push of a stored bundle whose signature does not verify; it is not counted."""

    def __init__(self, bundle: Bundle):
        super().__init__(bundle.bundle_id)
        self.bundle = bundle


@dataclass
class IngestResult:
    bundle: Bundle
    created: bool


@dataclass
class IngestDecision:
    status: str
    reason_code: str = ""
    rejected_reason: str | None = None


def ingest_bundle(parsed: ParsedBundle, *, source_ip: str | None = None) -> IngestResult:
    """Store a new bundle, or count a repeat push of a stored one.

    Raises BundleConflict when the bundle_id is stored with other content, and
    RepeatSignatureInvalid when a repeat push carries a bad signature. A new bundle that
    passes the device and signature checks is left `received` and validated after commit.
    """
    device = _fetch_device(parsed.device_id)
    signature_ok = _signature_verifies(device, parsed)
    logger.info("Push of bundle %s from device %s (%d transactions)", parsed.bundle_id, parsed.device_id,
                len(parsed.transactions))

    with transaction.atomic():
        # Most pushes bring a new bundle, so the INSERT comes first. When the bundle_id is
        # stored, or a concurrent push of it commits first, the INSERT does nothing and
        # the push is counted as a repeat under the row lock.
        bundle = _create_bundle(parsed, device, signature_ok, source_ip)
        if bundle is not None:
            return IngestResult(bundle=bundle, created=True)

        existing = Bundle.objects.select_for_update().get(bundle_id=parsed.bundle_id)
        _count_repeat_push(existing, parsed, device, signature_ok, source_ip)
        existing.refresh_from_db()
        return IngestResult(bundle=existing, created=False)


@dataclass(frozen=True)
class IngestDevice:
    """The columns of a device row that ingest reads."""

    pk: int
    device_id: str
    country: str
    key_alg: str
    pubkey_pem: str
    status: str
    last_seen_at: datetime | None


# Raw SQL because the ORM lookup took 1.5 ms per push under the profiler of
# bench/ingest.py, mostly to build the query and a full Device instance.
FETCH_DEVICE_SQL = (f"SELECT id, device_id, country, key_alg, pubkey_pem, status, last_seen_at "
                    f"FROM {Device._meta.db_table} WHERE device_id = %s")


def _fetch_device(device_id: str) -> IngestDevice | None:
    with server_binding_cursor() as cursor:
        cursor.execute(FETCH_DEVICE_SQL, [device_id])
        row = cursor.fetchone()
    return IngestDevice(*row) if row is not None else None


def _signature_verifies(device: IngestDevice | None, parsed: ParsedBundle) -> bool:
    if device is None:
        return False
    try:
        public_key = _cached_public_key(device.pubkey_pem)
    except InvalidPublicKey:
        logger.error("Stored public key of device %s does not parse", device.device_id)
        return False
    return verify_signature(public_key, parsed.signature_alg, parsed.signature_value, parsed.signed_bytes)


# Parsing a PEM key costs about as much as checking a signature. The PEM text is the
# cache key, so a replaced device key is parsed afresh; errors are not cached.
_cached_public_key = functools.lru_cache(maxsize=10_000)(load_public_key)


def _ingest_decision(device: IngestDevice | None, parsed: ParsedBundle, signature_ok: bool) -> IngestDecision:
    if device is None:
        return IngestDecision(BundleStatus.REJECTED, ReasonCode.UNKNOWN_DEVICE, reason_text(
            ReasonCode.UNKNOWN_DEVICE, f"device {parsed.device_id} is not registered"))
    if not signature_ok:
        detail = f"signature does not verify with the {device.key_alg} key registered for {device.device_id}"
        if parsed.signature_alg != device.key_alg:
            detail = f"signature algorithm {parsed.signature_alg} does not match the registered {device.key_alg} key"
        return IngestDecision(BundleStatus.REJECTED, ReasonCode.INVALID_SIGNATURE,
                              reason_text(ReasonCode.INVALID_SIGNATURE, detail))
    if device.status == DeviceStatus.BLOCKED:
        return IngestDecision(BundleStatus.REJECTED, ReasonCode.DEVICE_BLOCKED, reason_text(
            ReasonCode.DEVICE_BLOCKED, f"device {device.device_id} is blocked"))
    if device.status == DeviceStatus.INACTIVE:
        return IngestDecision(BundleStatus.REJECTED, ReasonCode.DEVICE_INACTIVE, reason_text(
            ReasonCode.DEVICE_INACTIVE, f"device {device.device_id} is inactive"))
    return IngestDecision(BundleStatus.RECEIVED)


def _create_bundle(parsed: ParsedBundle, device: IngestDevice | None, signature_ok: bool,
                   source_ip: str | None) -> Bundle | None:
    """Insert the bundle, its transactions and audit rows; return None if the bundle_id is stored."""
    decision = _ingest_decision(device, parsed, signature_ok)
    currencies = {tx.currency for tx in parsed.transactions}
    country = device.country if device is not None else ""
    now = timezone.now()

    bundle = Bundle(
        bundle_id=parsed.bundle_id,
        device_id=parsed.device_id,
        country=country,
        sequence=parsed.sequence,
        status=decision.status,
        reason_code=decision.reason_code,
        rejected_reason=decision.rejected_reason,
        device_created_at=parsed.created_at,
        device_sent_at=parsed.sent_at,
        signature_alg=parsed.signature_alg,
        signature_value=parsed.signature_value,
        content_hash=parsed.content_hash,
        payload=parsed.document,
        tx_count=len(parsed.transactions),
        total_amount=sum((tx.amount for tx in parsed.transactions), Decimal(0)),
        currency=currencies.pop() if len(currencies) == 1 else "",
        created_at=now,
        updated_at=now,
        last_pushed_at=now,
        source_ip=source_ip,
    )
    received_details = {"sequence": parsed.sequence, "tx_count": len(parsed.transactions),
                        "signature_alg": parsed.signature_alg}
    if not _insert_unless_stored(bundle, parsed.json_text, received_details):
        return None

    tx_status = TransactionStatus.REJECTED if decision.status == BundleStatus.REJECTED else TransactionStatus.PENDING
    _copy_transactions(parsed, tx_status)

    if signature_ok:
        _touch_device_after_commit(device)

    if decision.status == BundleStatus.REJECTED:
        logger.warning("Bundle %s from device %s rejected at ingest: %s", parsed.bundle_id, parsed.device_id,
                       decision.rejected_reason)
        record(AuditAction.BUNDLE_REJECTED, bundle_id=parsed.bundle_id, device_id=parsed.device_id,
               country=country, reason=decision.rejected_reason,
               old_values={"status": None}, new_values={"status": decision.status, "reason_code": decision.reason_code})
    else:
        from .tasks import enqueue_validation

        transaction.on_commit(lambda: enqueue_validation(bundle.pk))
    return bundle


# Bundle columns that the INSERT fills, in the order of the values in _insert_unless_stored.
# The others take their database defaults (push_attempts 1, reconciliation_status
# not_queued) or are NULL.
BUNDLE_INSERT_FIELDS = ["bundle_id", "device", "country", "sequence", "status", "reason_code", "rejected_reason",
                        "device_created_at", "device_sent_at", "signature_alg", "signature_value", "content_hash",
                        "payload", "tx_count", "total_amount", "currency", "created_at", "updated_at",
                        "last_pushed_at", "source_ip"]
# The columns of the bundle_received audit row that audit.services.record would fill.
# old_values, new_values and reason take their database defaults, and actor_user is NULL.
RECEIVED_AUDIT_FIELDS = ["action", "actor", "device_id", "country", "details", "ip_address", "created_at"]


def _insert_bundle_sql() -> str:
    quote = connection.ops.quote_name
    bundle_columns = ", ".join(quote(Bundle._meta.get_field(name).column) for name in BUNDLE_INSERT_FIELDS)
    audit_columns = ", ".join(quote(AuditLog._meta.get_field(name).column)
                              for name in [*RECEIVED_AUDIT_FIELDS, "bundle_id"])
    return (
        f"WITH new_bundle AS ("
        f"INSERT INTO {Bundle._meta.db_table} ({bundle_columns}) "
        f"VALUES ({', '.join(['%s'] * len(BUNDLE_INSERT_FIELDS))}) "
        f"ON CONFLICT ({quote(Bundle._meta.get_field('bundle_id').column)}) DO NOTHING RETURNING id, bundle_id), "
        f"received_audit_row AS ("
        f"INSERT INTO {AuditLog._meta.db_table} ({audit_columns}) "
        # Parameters in a SELECT list are read as text, which PostgreSQL does not assign
        # to an inet column without a cast.
        f"SELECT {', '.join('%s::inet' if name == 'ip_address' else '%s' for name in RECEIVED_AUDIT_FIELDS)}, "
        f"bundle_id FROM new_bundle) "
        f"SELECT id FROM new_bundle"
    )


# Built once per process. The ORM would run Field.get_db_prep_save over every column and
# compile the statement on each push, and it cannot write the audit row in the same
# statement. Raw SQL keeps ingest to one round trip for the bundle and its audit row.
INSERT_BUNDLE_SQL = _insert_bundle_sql()


def _insert_unless_stored(bundle: Bundle, payload_text: str, received_details: dict) -> bool:
    """INSERT the bundle row and its bundle_received audit row; return whether they were inserted.

    The audit row is selected from the RETURNING of the bundle INSERT, so with ON CONFLICT
    (bundle_id) DO NOTHING a stored bundle_id inserts neither row.
    """
    bundle_row = [bundle.bundle_id, bundle.device_id, bundle.country, bundle.sequence, bundle.status,
                  bundle.reason_code, bundle.rejected_reason, bundle.device_created_at, bundle.device_sent_at,
                  bundle.signature_alg, bundle.signature_value, bundle.content_hash, payload_text,
                  bundle.tx_count, bundle.total_amount, bundle.currency, bundle.created_at, bundle.updated_at,
                  bundle.last_pushed_at, bundle.source_ip]
    audit_row = [AuditAction.BUNDLE_RECEIVED.value, f"device:{bundle.device_id}", bundle.device_id, bundle.country,
                 Jsonb(received_details), bundle.source_ip, bundle.created_at]

    with server_binding_cursor() as cursor:
        cursor.execute(INSERT_BUNDLE_SQL, bundle_row + audit_row)
        row = cursor.fetchone()
    if row is None:
        return False

    bundle.pk = row[0]
    bundle._state.adding = False
    bundle._state.db = connection.alias
    return True


# Columns that COPY fills; the others take their database defaults, as in the model.
TRANSACTION_COPY_FIELDS = ["bundle", "device_id", "position", "local_id", "type", "amount", "currency", "sender",
                           "receiver", "initiated_at", "note", "status"]
# Built once per process, as INSERT_BUNDLE_SQL.
COPY_TRANSACTIONS_SQL = (f"COPY {Transaction._meta.db_table} ("
                         + ", ".join(connection.ops.quote_name(Transaction._meta.get_field(name).column)
                                     for name in TRANSACTION_COPY_FIELDS)
                         + ") FROM STDIN")
BACKSLASH = "\\"
ESCAPED_BACKSLASH = "\\\\"


def _copy_transactions(parsed: ParsedBundle, status: str) -> None:
    """Insert the bundle's transactions with one COPY, several times faster than a multi-row INSERT.

    The rows are written as COPY text here, because psycopg's write_row took about 3 µs
    per row under the profiler of bench/ingest.py. After the wire checks, a backslash is
    the only character that COPY text must escape. Only a note can contain one, and no
    field contains a tab, a newline or another control character.
    """
    prefix = f"{parsed.bundle_id}\t{parsed.device_id}\t"
    lines = [f"{prefix}{tx.position}\t{tx.local_id}\t{tx.type}\t{tx.amount}\t{tx.currency}\t{tx.sender}\t"
             f"{tx.receiver}\t{tx.initiated_at.isoformat()}\t{tx.note.replace(BACKSLASH, ESCAPED_BACKSLASH)}\t"
             f"{status}\n"
             for tx in parsed.transactions]
    with connection.cursor() as cursor:
        with cursor.copy(COPY_TRANSACTIONS_SQL) as copy:
            copy.write("".join(lines))


def _count_repeat_push(existing: Bundle, parsed: ParsedBundle, device: IngestDevice | None, signature_ok: bool,
                       source_ip: str | None) -> None:
    if existing.content_hash != parsed.content_hash:
        logger.warning("Bundle %s from device %s pushed again with other content", parsed.bundle_id,
                       parsed.device_id)
        raise BundleConflict(existing, same_device_signed=signature_ok and existing.device_id == parsed.device_id)

    # A bad signature must not let anyone bump the counters of a good bundle. A device that
    # keeps retrying a bundle already rejected for its signature is still counted.
    if device is not None and not signature_ok and existing.reason_code != ReasonCode.INVALID_SIGNATURE:
        logger.warning("Repeat push of bundle %s from device %s has an invalid signature", parsed.bundle_id,
                       parsed.device_id)
        raise RepeatSignatureInvalid(existing)

    Bundle.objects.filter(pk=existing.pk).update(push_attempts=F("push_attempts") + 1,
                                                 last_pushed_at=timezone.now())
    if signature_ok:
        _touch_device_after_commit(device)
    record(AuditAction.BUNDLE_REPUSHED, actor=f"device:{parsed.device_id}", bundle_id=parsed.bundle_id,
           device_id=parsed.device_id, country=existing.country, ip_address=source_ip,
           details={"sent_at": parsed.sent_at.isoformat(), "status": existing.status})


def _touch_device_after_commit(device: IngestDevice) -> None:
    # Lock order everywhere is the device row before its bundle rows. Updating
    # last_seen_at inside this transaction would lock the device after the bundle and
    # could deadlock with validation or a block action, so it runs after commit. The write
    # is skipped while the stored value is less than LAST_SEEN_RESOLUTION old, because each
    # write is a commit of its own and a busy device pushes many bundles a minute.
    now = timezone.now()
    if device.last_seen_at is not None and now - device.last_seen_at < LAST_SEEN_RESOLUTION:
        return
    transaction.on_commit(lambda: Device.objects.filter(pk=device.pk).update(last_seen_at=now))
