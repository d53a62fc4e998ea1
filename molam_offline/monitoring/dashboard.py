"""Figures of the admin index's operations dashboard, cached for a few seconds."""

from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.core.cache import caches
from django.utils import timezone

from bundles.models import BundleStatus

from . import figures
from .thresholds import Level, get_thresholds

CACHE_KEY = "molam_offline:dashboard"


@dataclass(frozen=True)
class ChartSegment:
    status: str
    count: int
    percent: float  # height within the chart, relative to the busiest hour


@dataclass(frozen=True)
class ChartBar:
    hour: datetime
    total: int
    pushes: int
    segments: list[ChartSegment]


def dashboard_figures(now: datetime | None = None) -> dict:
    """Return every dashboard figure, from the cache if it was computed in the last few seconds."""
    # A per-process cache: the figures are cheap to compute again in another worker.
    cache = caches["local"]
    cached = cache.get(CACHE_KEY)
    if cached is not None:
        return cached
    result = compute_dashboard_figures(now)
    cache.set(CACHE_KEY, result, settings.MONITORING.get("DASHBOARD_CACHE_SECONDS", 30))
    return result


def compute_dashboard_figures(now: datetime | None = None) -> dict:
    from molam_offline.models import AlertState, AlertStatus

    now = now or timezone.now()
    status_rows = figures.bundle_status_last_hour(now)
    reasons = figures.rejection_reasons(now)
    hours = figures.pushes_by_hour(now)
    return {
        "computed_at": now,
        "thresholds": get_thresholds(),
        "status_rows": status_rows,
        "rate": figures.rejection_rate(status_rows),
        "reasons": reasons[:10],
        "unknown_reasons": [row for row in reasons if not row.known],
        "confirmed_fraud": figures.confirmed_fraud_last_24h(now),
        "queue": figures.sync_queue_status(now),
        "workers": figures.worker_heartbeats(now),
        "review": figures.review_backlog(now),
        "devices": figures.device_anomalies(),
        "chart": _chart(hours),
        "firing_alerts": [(state, _rule_title(state.rule))
                          for state in AlertState.objects.filter(status=AlertStatus.FIRING).order_by("rule")],
        "levels": {level.name: level for level in Level},
    }


def _rule_title(name: str) -> str:
    from .alerts import RULES_BY_NAME

    rule = RULES_BY_NAME.get(name)
    return str(rule.title) if rule is not None else name


def _chart(hours: list[figures.HourRow]) -> list[ChartBar]:
    busiest = max((row.total for row in hours), default=0) or 1
    order = [status for status in figures.STATUS_ORDER] + sorted(
        {status for row in hours for status in row.counts} - set(figures.STATUS_ORDER))
    bars = []
    for row in hours:
        segments = [ChartSegment(status=status, count=row.counts[status], percent=100 * row.counts[status] / busiest)
                    for status in order if row.counts.get(status)]
        bars.append(ChartBar(hour=row.hour, total=row.total, pushes=row.pushes, segments=segments))
    return bars


STATUS_COLOURS = {
    BundleStatus.ACCEPTED: "#2e7d32",
    BundleStatus.REJECTED: "#c62828",
    BundleStatus.QUARANTINED: "#ef6c00",
    BundleStatus.PENDING_REVIEW: "#f9a825",
    BundleStatus.RECEIVED: "#607d8b",
}
