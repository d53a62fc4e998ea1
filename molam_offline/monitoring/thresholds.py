"""Monitoring thresholds, read from settings.MONITORING (defaults from the on-call runbook in docs/operations.md)."""

from dataclasses import dataclass
from datetime import timedelta
from enum import IntEnum

from django.conf import settings
from django.utils.translation import gettext_lazy as _


class Level(IntEnum):
    """Severity of a figure; the value is the exit code of the diagnosis commands (Nagios convention)."""

    OK = 0
    WARNING = 1
    ESCALATION = 2

    @property
    def label(self) -> str:
        return {Level.OK: _("OK"), Level.WARNING: _("Warning"), Level.ESCALATION: _("Escalate")}[self]


@dataclass(frozen=True)
class Thresholds:
    rejection_rate_warning: float
    rejection_rate_escalation: float
    rejection_rate_min_bundles: int
    queue_size_max: int
    queue_oldest_max: timedelta
    worker_heartbeat_max_age: timedelta
    review_stuck_after: timedelta
    review_stuck_max: int


DEFAULTS = {
    # Runbook monitoring: warn above 5% rejected bundles; escalate above 10% over an hour.
    "REJECTION_RATE_WARNING": 0.05,
    "REJECTION_RATE_ESCALATION": 0.10,
    # NOTE: not from the runbook. Below this many decided bundles in the hour one
    # rejection would swing the rate past both lines, so no rate alert is raised.
    "REJECTION_RATE_MIN_BUNDLES": 20,
    # Runbook: alert when the sync queue contains more than 500 pending bundles, or the
    # oldest pending one waits more than an hour (the worker may be stuck).
    "QUEUE_SIZE_MAX": 500,
    "QUEUE_OLDEST_MAX": timedelta(hours=1),
    # Runbook escalation: a reconciliation worker stuck for more than 30 minutes.
    "WORKER_HEARTBEAT_MAX_AGE": timedelta(minutes=30),
    # NOTE: not from the runbook, which names the symptom without a number. A bundle in
    # pending_review or quarantined for longer than this counts as stuck, and more than
    # REVIEW_STUCK_MAX stuck bundles raise an alert.
    "REVIEW_STUCK_AFTER": timedelta(hours=4),
    "REVIEW_STUCK_MAX": 10,
}


def get_thresholds() -> Thresholds:
    configured = {**DEFAULTS, **getattr(settings, "MONITORING", {})}
    return Thresholds(
        rejection_rate_warning=float(configured["REJECTION_RATE_WARNING"]),
        rejection_rate_escalation=float(configured["REJECTION_RATE_ESCALATION"]),
        rejection_rate_min_bundles=int(configured["REJECTION_RATE_MIN_BUNDLES"]),
        queue_size_max=int(configured["QUEUE_SIZE_MAX"]),
        queue_oldest_max=configured["QUEUE_OLDEST_MAX"],
        worker_heartbeat_max_age=configured["WORKER_HEARTBEAT_MAX_AGE"],
        review_stuck_after=configured["REVIEW_STUCK_AFTER"],
        review_stuck_max=int(configured["REVIEW_STUCK_MAX"]),
    )
