"""Celery tasks of the bundle pipeline. Each takes an id and is safe to run twice.

A task message only wakes a worker up, and the bundle row in PostgreSQL records the work. When a
message is lost (broker down at push time, worker killed), the periodic sweep finds the
bundles still `received` and enqueues them again.
"""

import logging
from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.db import OperationalError
from django.utils import timezone

from .models import Bundle, BundleStatus

logger = logging.getLogger(__name__)

SWEEP_BATCH = 1000


def enqueue_validation(bundle_pk: int) -> None:
    """Send the validation task; a broker error is logged and left to the sweep."""
    try:
        validate_bundle_task.delay(bundle_pk)
    except Exception:  # The broker may be down, and the bundle row in PostgreSQL is enough for the sweep.
        logger.exception("Could not enqueue validation of bundle pk=%s; the sweep will retry", bundle_pk)


@shared_task(name="bundles.validate_bundle", acks_late=True, autoretry_for=(OperationalError,),
             retry_backoff=True, retry_backoff_max=60, max_retries=5)
def validate_bundle_task(bundle_pk: int) -> str | None:
    # A lost database connection is retried with backoff; after the last retry the
    # bundle stays `received` and the sweep enqueues it again.
    from .validation import validate_bundle

    logger.info("Validation task started for bundle pk=%s", bundle_pk)
    return validate_bundle(bundle_pk)


@shared_task(name="bundles.sweep_received_bundles")
def sweep_received_bundles(older_than_seconds: int | None = None) -> int:
    """Re-enqueue validation of bundles still `received` after their message should have run; return how many.

    `older_than_seconds` defaults to the VALIDATION_SWEEP_AFTER_SECONDS setting. A bundle
    whose first message is merely slow gets a second one, which the status check in
    validation makes harmless. At most SWEEP_BATCH bundles are swept per run, oldest first.
    """
    if older_than_seconds is None:
        older_than_seconds = settings.OFFLINE["VALIDATION_SWEEP_AFTER_SECONDS"]
    cutoff = timezone.now() - timedelta(seconds=older_than_seconds)
    stale = list(Bundle.objects.filter(status=BundleStatus.RECEIVED, updated_at__lte=cutoff)
                 .order_by("pk").values_list("pk", flat=True)[:SWEEP_BATCH])

    # Restarting the clock of each swept bundle means a long broker backlog gets one more
    # message per bundle per sweep interval, not one per sweep run.
    Bundle.objects.filter(pk__in=stale, status=BundleStatus.RECEIVED).update(updated_at=timezone.now())
    for bundle_pk in stale:
        enqueue_validation(bundle_pk)
    if stale:
        logger.warning("Sweep re-enqueued validation of %d bundles still received after %d seconds", len(stale),
                       older_than_seconds)
    return len(stale)
