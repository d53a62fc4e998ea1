"""Prometheus metrics: request counters from every gunicorn worker, and gauges read from PostgreSQL.

Counters and histograms use prometheus_client's multiprocess mode when
PROMETHEUS_MULTIPROC_DIR is set (gunicorn.conf.py sets it), so a scrape served by any
worker reports the sum over all workers. Figures about bundles, the queue, workers and
alerts are computed from the database at scrape time with the same queries as the
dashboard, so they are the same whichever process (or pod) serves the scrape.
"""

import logging
import os

from django.db import DatabaseError
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest, multiprocess
from prometheus_client.core import GaugeMetricFamily

from . import figures

logger = logging.getLogger(__name__)

PUSHES = Counter("molam_offline_bundle_pushes", "Bundle push requests (POST /offline/bundles) by HTTP status code.",
                 ["code"])
PUSH_SECONDS = Histogram("molam_offline_bundle_push_duration_seconds",
                         "Time to answer a bundle push, signature check and storage included.",
                         buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))


def record_push(status_code: int, seconds: float) -> None:
    PUSHES.labels(code=str(status_code)).inc()
    PUSH_SECONDS.observe(seconds)


class _ProcessCollector:
    """The metrics of this process's default registry, for runs without multiprocess mode."""

    def collect(self):
        yield from REGISTRY.collect()


class DatabaseCollector:
    """Gauges computed from PostgreSQL at each scrape, with the dashboard's queries."""

    def collect(self):
        up = GaugeMetricFamily("molam_offline_database_up", "1 if the figures below could be read from PostgreSQL.")
        try:
            metrics = list(self._collect_figures())
        except DatabaseError:
            logger.exception("Reading monitoring figures for /metrics failed")
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from metrics

    def _collect_figures(self):
        from molam_offline.models import AlertState, AlertStatus

        status_rows = figures.bundle_status_last_hour()
        bundles = GaugeMetricFamily("molam_offline_bundles_last_hour", "Bundles received in the last hour by status.",
                                    labels=["status"])
        attempts = GaugeMetricFamily("molam_offline_bundle_push_attempts_avg_last_hour",
                                     "Average push attempts of the last hour's bundles by status.", labels=["status"])
        for row in status_rows:
            bundles.add_metric([row.status], row.count)
            if row.avg_push_attempts is not None:
                attempts.add_metric([row.status], row.avg_push_attempts)
        yield bundles
        yield attempts

        rate = figures.rejection_rate(status_rows)
        if rate.rate is not None:
            yield GaugeMetricFamily("molam_offline_rejection_rate_last_hour",
                                    "Share of the last hour's decided bundles that were rejected (0 to 1).",
                                    value=rate.rate)

        reasons = GaugeMetricFamily("molam_offline_rejected_bundles_last_24h",
                                    "Bundles received in the last 24 hours and rejected, by reason code.",
                                    labels=["reason", "known"])
        for row in figures.rejection_reasons():
            reasons.add_metric([row.code, "true" if row.known else "false"], row.count)
        yield reasons

        queue = figures.sync_queue_status()
        queue_rows = GaugeMetricFamily("molam_offline_sync_queue_rows", "Live sync queue rows by status.",
                                       labels=["status"])
        queue_rows.add_metric(["pending"], queue.pending)
        queue_rows.add_metric(["processing"], queue.processing)
        queue_rows.add_metric(["failed"], queue.failed)
        yield queue_rows
        age = queue.oldest_pending_age.total_seconds() if queue.oldest_pending_age else 0
        yield GaugeMetricFamily("molam_offline_sync_queue_oldest_pending_age_seconds",
                                "Age of the oldest pending sync queue row; 0 when none is pending.", value=age)

        heartbeat = GaugeMetricFamily("molam_offline_worker_heartbeat_age_seconds",
                                      "Seconds since each reconciliation worker's last successful run.",
                                      labels=["worker"])
        for worker in figures.worker_heartbeats():
            heartbeat.add_metric([worker.worker_name], worker.age.total_seconds())
        yield heartbeat

        review = figures.review_backlog()
        backlog = GaugeMetricFamily("molam_offline_review_backlog_bundles",
                                    "Bundles waiting for an operator, by status.", labels=["status"])
        for status, count in review.by_status.items():
            backlog.add_metric([status], count)
        yield backlog
        yield GaugeMetricFamily("molam_offline_review_stuck_bundles",
                                "Bundles waiting for an operator longer than the review threshold.",
                                value=review.stuck)

        for name, figure in (("validation", figures.validation_latency()),
                             ("reconciliation", figures.reconciliation_latency())):
            latency = GaugeMetricFamily(f"molam_offline_{name}_latency_seconds",
                                        f"{name.capitalize()} latency over the last hour (p50, p95, max).",
                                        labels=["quantile"])
            for quantile, value in (("0.5", figure.p50_seconds), ("0.95", figure.p95_seconds),
                                    ("1", figure.max_seconds)):
                if value is not None:
                    latency.add_metric([quantile], value)
            yield latency

        alerts = GaugeMetricFamily("molam_offline_alert_firing", "1 while an alert rule is firing.",
                                   labels=["rule", "level"])
        for state in AlertState.objects.order_by("rule")[:100]:
            alerts.add_metric([state.rule, state.level], 1 if state.status == AlertStatus.FIRING else 0)
        yield alerts


def render_metrics() -> bytes:
    """Render every metric in the Prometheus text format."""
    registry = CollectorRegistry(auto_describe=False)
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.MultiProcessCollector(registry)
    else:
        registry.register(_ProcessCollector())
    registry.register(DatabaseCollector())
    return generate_latest(registry)
