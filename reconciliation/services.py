"""Sync queue operations shared by validation, operator actions and the reconciliation worker."""

import logging

from django.db import IntegrityError, transaction

from audit.models import AuditAction
from audit.services import record

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
