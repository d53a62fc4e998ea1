"""Celery tasks of reconciliation. Beat runs the same worker code as `manage.py reconcile`."""

import logging
import socket

from celery import shared_task

logger = logging.getLogger(__name__)

# Batches per beat tick, so that one tick cannot run for ever on a large backlog; the next tick goes on.
MAX_BATCHES_PER_TICK = 20


@shared_task(name="reconciliation.reconcile_sync_queue")
def reconcile_sync_queue() -> dict:
    """Post claimable queue rows to the ledger and return the run's counts."""
    from .worker import ReconciliationWorker

    worker = ReconciliationWorker(name=f"celery@{socket.gethostname()}")
    return worker.run_once(max_batches=MAX_BATCHES_PER_TICK).as_dict()
