"""Celery tasks of the bundle pipeline. Each takes an id and is safe to run twice."""

import logging
from datetime import timedelta

from celery import shared_task
from django.utils import timezone

from .models import Bundle, BundleStatus

logger = logging.getLogger(__name__)

# A bundle still `received` this long after its last change lost its task message.
SWEEP_AFTER = timedelta(minutes=2)


def enqueue_validation(bundle_pk: int) -> None:
    """Send the validation task; a broker error is logged and left to the sweep."""
    try:
        validate_bundle_task.delay(bundle_pk)
    except Exception:  # The broker may be down; PostgreSQL still holds the work.
        logger.exception("Could not enqueue validation of bundle pk=%s; the sweep will retry", bundle_pk)


@shared_task(name="bundles.validate_bundle", acks_late=True)
def validate_bundle_task(bundle_pk: int) -> str | None:
    from .validation import validate_bundle

    return validate_bundle(bundle_pk)


@shared_task(name="bundles.sweep_received_bundles")
def sweep_received_bundles() -> int:
    """Re-enqueue validation of bundles whose task message was lost; return how many."""
    cutoff = timezone.now() - SWEEP_AFTER
    stale = list(Bundle.objects.filter(status=BundleStatus.RECEIVED, updated_at__lt=cutoff)
                 .values_list("pk", flat=True)[:1000])
    for bundle_pk in stale:
        enqueue_validation(bundle_pk)
    if stale:
        logger.warning("Sweep re-enqueued validation of %d bundles", len(stale))
    return len(stale)
