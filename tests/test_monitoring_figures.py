"""The runbook figures behind the dashboard, the commands, /metrics and the alerts."""

from datetime import timedelta

import pytest
from django.core.cache import caches
from django.utils import timezone

from bundles.models import BundleStatus
from devices.models import Device
from molam_offline.monitoring import figures
from molam_offline.monitoring.thresholds import Level
from tests.monitoring_helpers import accept, heartbeat, make_bundles, queue, reject

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fresh_cache():
    caches["local"].clear()
    yield
    caches["local"].clear()


def test_status_last_hour_counts_and_attempts():
    accept(3)
    reject(2, push_attempts=3)
    accept(5, age=timedelta(hours=2))  # outside the hour

    rows = {row.status: row for row in figures.bundle_status_last_hour()}

    assert rows["accepted"].count == 3
    assert rows["rejected"].count == 2
    assert rows["rejected"].avg_push_attempts == 3.0
    assert rows["quarantined"].count == 0


@pytest.mark.parametrize("accepted, rejected, level", [
    (100, 4, Level.OK),
    (100, 7, Level.WARNING),
    (100, 15, Level.ESCALATION),
])
def test_rejection_rate_levels(accepted, rejected, level):
    accept(accepted)
    reject(rejected)

    rate = figures.rejection_rate()

    assert rate.level == level
    assert rate.rejected == rejected
    assert rate.decided == accepted + rejected


def test_rejection_rate_needs_minimum_sample():
    accept(5)
    reject(5)

    rate = figures.rejection_rate()

    assert rate.rate is None
    assert rate.level == Level.OK


def test_received_bundles_not_in_rate():
    accept(18)
    reject(2)
    make_bundles(50, BundleStatus.RECEIVED)

    assert figures.rejection_rate().decided == 20


def test_reasons_mark_unknown_codes():
    reject(3, "clock_skew")
    reject(1, "made_up_reason")
    reject(2, "bundle_too_old", age=timedelta(hours=30))  # outside 24 hours

    reasons = figures.rejection_reasons()

    assert [(row.code, row.count, row.known) for row in reasons] == [
        ("clock_skew", 3, True), ("made_up_reason", 1, False)]


def test_queue_over_size_and_age():
    old = accept(1)
    queue(old, age=timedelta(hours=2))

    figure = figures.sync_queue_status()

    assert figure.pending == 1
    assert figure.level == Level.WARNING
    assert "oldest pending bundle waits 2h00m" in figure.problems[0]


def test_queue_size_threshold(settings):
    settings.MONITORING = {**settings.MONITORING, "QUEUE_SIZE_MAX": 3}
    queue(accept(4))

    figure = figures.sync_queue_status()

    assert figure.level == Level.WARNING
    assert figure.problems == ["4 pending bundles (max 3)"]


def test_capped_count_stops_at_cap():
    accept(5)

    assert figures.capped_count(figures.Bundle.objects.all(), cap=3) == (3, True)
    assert figures.capped_count(figures.Bundle.objects.all(), cap=10) == (5, False)


def test_worker_heartbeat_staleness():
    heartbeat("reconcile@a", age=timedelta(minutes=5))
    heartbeat("reconcile@b", age=timedelta(minutes=45), error="ledger timed out")

    rows = {row.worker_name: row for row in figures.worker_heartbeats()}

    assert rows["reconcile@a"].stale is False
    assert rows["reconcile@b"].stale is True
    assert rows["reconcile@b"].last_error == "ledger timed out"


def test_review_backlog_stuck():
    make_bundles(11, BundleStatus.QUARANTINED, age=timedelta(hours=5))
    make_bundles(2, BundleStatus.PENDING_REVIEW)

    review = figures.review_backlog()

    assert review.by_status == {"quarantined": 11, "pending_review": 2}
    assert review.stuck == 11
    assert review.level == Level.WARNING


def test_device_anomalies_conflicts_first(make_device):
    make_device("DEVICE_GAP")
    make_device("DEVICE_CLONED")
    make_device("DEVICE_FINE")
    Device.objects.filter(device_id="DEVICE_GAP").update(missing_sequence_count=4)
    Device.objects.filter(device_id="DEVICE_CLONED").update(key_conflict_detected_at=timezone.now())

    devices = [device.device_id for device in figures.device_anomalies()]

    assert devices == ["DEVICE_CLONED", "DEVICE_GAP"]


def test_pushes_by_hour_covers_24_hours():
    accept(2)
    reject(1)
    accept(1, age=timedelta(hours=3))

    hours = figures.pushes_by_hour()

    assert len(hours) == 24
    assert hours[-1].counts == {"accepted": 2, "rejected": 1}
    assert hours[-4].counts == {"accepted": 1}
    assert sum(row.total for row in hours) == 4


def test_validation_latency_percentiles():
    bundles = accept(3)
    for seconds, bundle in zip((1, 2, 30), bundles):
        figures.Bundle.objects.filter(pk=bundle.pk).update(validated_at=bundle.created_at + timedelta(seconds=seconds))

    latency = figures.validation_latency()

    assert latency.count == 3
    assert latency.p50_seconds == pytest.approx(2, abs=0.01)
    assert latency.max_seconds == pytest.approx(30, abs=0.01)
