"""Celery tasks of the project package."""

from celery import shared_task


@shared_task(name="molam_offline.evaluate_alerts")
def evaluate_alerts_task() -> dict[str, str]:
    """Evaluate the alert rules and announce new and resolved incidents."""
    from molam_offline.monitoring.alerts import evaluate_alerts

    return evaluate_alerts()
