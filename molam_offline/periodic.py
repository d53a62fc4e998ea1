"""Periodic work for the quick start, where no Celery beat runs.

Production runs the same functions from Celery beat (see CELERY_BEAT_SCHEDULE).
"""

import logging

logger = logging.getLogger(__name__)


def run_periodic_once() -> None:
    """Run one round of every periodic job, logging and skipping any that fails."""
    from bundles.tasks import sweep_received_bundles
    from molam_offline.monitoring.alerts import evaluate_alerts
    from reconciliation.tasks import reconcile_sync_queue

    for job in (sweep_received_bundles, reconcile_sync_queue, evaluate_alerts):
        try:
            job()
        except Exception:  # One failing job must not stop the others or the server.
            logger.exception("Periodic job %s failed", job.__name__)
