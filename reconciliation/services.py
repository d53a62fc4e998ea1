"""Sync queue and ledger operations shared by validation, operator actions and the reconciliation worker."""

import logging
from dataclasses import dataclass
from decimal import Decimal

from django.db import IntegrityError, transaction
from django.db.models.functions import Now
from django.utils.translation import gettext as _

from audit.models import AuditAction
from audit.services import record
from bundles.models import Bundle, BundleStatus, ReconciliationStatus

from .ledger import ensure_accounts, lock_accounts
from .models import DEFAULT_PRIORITY, QueueStatus, SyncQueueItem

logger = logging.getLogger(__name__)


def enqueue_bundle(bundle, *, priority: int = DEFAULT_PRIORITY, acting_user=None) -> SyncQueueItem | None:
    """Queue an accepted bundle for ledger posting; return None if it already has a live queue row.

    Must run inside the transaction that accepted the bundle. The partial unique index on
    live rows makes a second call a no-op even when two callers race.
    """
    try:
        with transaction.atomic():
            item = SyncQueueItem.objects.create(bundle=bundle, priority=priority, status=QueueStatus.PENDING)
    except IntegrityError:
        logger.info("Bundle %s (device %s) is already on the sync queue", bundle.bundle_id, bundle.device_id)
        return None

    record(AuditAction.QUEUE_ENQUEUED, acting_user=acting_user, bundle_id=bundle.bundle_id,
           device_id=bundle.device_id, country=bundle.country, details={"priority": priority})
    return item


class QueueActionError(Exception):
    """An operator action on the sync queue that cannot be done; the message gives the reason."""


REQUEUEABLE = (QueueStatus.DEAD, QueueStatus.FAILED)


def requeue_queue_item(*, acting_user, item_id: int, reason: str = "") -> SyncQueueItem:
    """Put a dead-lettered or failed queue row back to pending, with its attempts reset and an audit row.

    The status change is a compare-and-set from dead or failed, so two operators clicking
    at once requeue the row once. Raises QueueActionError if the row is not found, not
    dead or failed, its bundle is not accepted, or the bundle already has another live row.
    """
    with transaction.atomic():
        item = SyncQueueItem.objects.select_related("bundle").filter(pk=item_id).first()
        if item is None:
            raise QueueActionError(_("Queue row %(id)s not found.") % {"id": item_id})
        bundle = item.bundle
        if bundle.status != BundleStatus.ACCEPTED:
            raise QueueActionError(
                _("Bundle %(bundle)s is %(status)s; only accepted bundles are posted. Accept it first.")
                % {"bundle": bundle.bundle_id, "status": bundle.status})

        old_status, old_attempts, old_error = item.status, item.attempts, item.last_error
        try:
            with transaction.atomic():
                changed = SyncQueueItem.objects.filter(pk=item_id, status__in=REQUEUEABLE).update(
                    status=QueueStatus.PENDING, attempts=0, available_at=None, locked_by="", lease_expires_at=None,
                    updated_at=Now())
        except IntegrityError:
            raise QueueActionError(_("Bundle %(bundle)s already has another pending or processing queue row.")
                                   % {"bundle": bundle.bundle_id}) from None
        if not changed:
            # Re-read: a worker may have claimed a failed row since it was read above.
            current_status = SyncQueueItem.objects.filter(pk=item_id).values_list("status", flat=True).first()
            raise QueueActionError(_("Queue row %(id)s is %(status)s; only dead or failed rows can be requeued.")
                                   % {"id": item_id, "status": current_status})

        Bundle.objects.filter(pk=bundle.pk).exclude(reconciliation_status=ReconciliationStatus.QUEUED).update(
            reconciliation_status=ReconciliationStatus.QUEUED)
        record(AuditAction.BUNDLE_REQUEUED, acting_user=acting_user, bundle_id=bundle.bundle_id,
               device_id=bundle.device_id, country=bundle.country, reason=reason,
               old_values={"queue_status": old_status, "attempts": old_attempts, "last_error": old_error},
               new_values={"queue_status": QueueStatus.PENDING, "attempts": 0},
               details={"queue_item_id": item_id})

    logger.info("Queue row %s of bundle %s requeued from %s by %s", item_id, bundle.bundle_id, old_status,
                acting_user)
    item.refresh_from_db()
    return item


@dataclass(frozen=True)
class OpeningBalance:
    identifier: str
    currency: str
    amount: Decimal


def set_opening_balances(rows: list[OpeningBalance], *, acting_user=None, source: str = "") -> int:
    """Set the opening balance of each (identifier, currency) account; return how many changed.

    Changing an opening balance moves the balance by the same difference, so that the
    balance stays opening balance plus credits minus debits. Accounts are locked in id
    order, like the posting worker does. Loading the same rows again changes nothing and
    writes no audit row. Raises ValueError if a balance would become negative.
    """
    keys = {(row.identifier, row.currency) for row in rows}
    if len(keys) != len(rows):
        raise ValueError("the rows name an account and currency more than once")
    ensure_accounts(keys)

    changed = 0
    with transaction.atomic():
        accounts = lock_accounts(keys)
        for row in rows:
            account = accounts[(row.identifier, row.currency)]
            difference = row.amount - account.opening_balance
            if not difference:
                continue
            if account.balance + difference < 0:
                raise ValueError(f"opening balance {row.amount} {row.currency} for {row.identifier} would make "
                                 f"its balance negative (balance {account.balance}, opening "
                                 f"{account.opening_balance})")
            old_values = {"opening_balance": str(account.opening_balance), "balance": str(account.balance)}
            account.opening_balance = row.amount
            account.balance += difference
            account.save(update_fields=["opening_balance", "balance", "updated_at"])
            record(AuditAction.OPENING_BALANCE_SET, acting_user=acting_user, reason=source,
                   old_values=old_values,
                   new_values={"opening_balance": str(account.opening_balance), "balance": str(account.balance)},
                   details={"account": row.identifier, "currency": row.currency})
            changed += 1

    logger.info("Opening balances loaded from %s: %d of %d accounts changed", source or "a caller", changed,
                len(rows))
    return changed
