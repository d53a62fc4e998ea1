"""One query per runbook figure, each bounded so it stays fast with millions of bundles.

Every query is limited by a time window on offline_tx_bundles' (status, created_at) and
created_at indexes, by a LIMIT, or runs on a small table (sync queue backlog, worker
heartbeats). Counts that could grow without bound stop at a cap and report that they did.
"""

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db.models import Avg, Count, Q, Sum
from django.db.models.functions import TruncHour
from django.utils import timezone

from bundles.models import REVIEW_STATUSES, Bundle, BundleStatus
from bundles.reasons import ReasonCode
from devices.models import Device
from reconciliation.models import QueueStatus, SyncQueueItem, WorkerHeartbeat

from .thresholds import Level, get_thresholds

STATUS_WINDOW = timedelta(hours=1)  # The runbook's Step 1 looks at the last hour.
REASON_WINDOW = timedelta(hours=24)  # Its Step 2 lists rejections of the last 24 hours.
CHART_HOURS = 24
# Counts stop here: past it the dashboard shows "10000+", far above every alert threshold.
COUNT_CAP = 10_000
KNOWN_REASON_CODES = frozenset(ReasonCode.values)
STATUS_ORDER = [BundleStatus.ACCEPTED, BundleStatus.REJECTED, BundleStatus.QUARANTINED,
                BundleStatus.PENDING_REVIEW, BundleStatus.RECEIVED]


def capped_count(queryset, cap: int = COUNT_CAP) -> tuple[int, bool]:
    """Count rows up to `cap` (COUNT over a LIMIT subquery); return the count and whether it hit the cap."""
    count = queryset.order_by()[:cap + 1].count()
    return min(count, cap), count > cap


@dataclass(frozen=True)
class StatusRow:
    status: str
    label: str
    count: int
    avg_push_attempts: float | None


def bundle_status_last_hour(now: datetime | None = None) -> list[StatusRow]:
    """Bundles received in the last hour by status, with their average push attempts (Step 1)."""
    now = now or timezone.now()
    rows = (Bundle.objects.filter(created_at__gt=now - STATUS_WINDOW).order_by().values("status")
            .annotate(count=Count("id"), avg_attempts=Avg("push_attempts")))
    by_status = {row["status"]: row for row in rows}

    result = []
    for status in STATUS_ORDER + sorted(set(by_status) - set(STATUS_ORDER)):
        row = by_status.get(status, {"count": 0, "avg_attempts": None})
        label = BundleStatus(status).label if status in BundleStatus.values else status
        average = float(row["avg_attempts"]) if row["avg_attempts"] is not None else None
        result.append(StatusRow(status=status, label=str(label), count=row["count"], avg_push_attempts=average))
    return result


@dataclass(frozen=True)
class RejectionRate:
    decided: int
    rejected: int
    rate: float | None  # None when too few bundles were decided in the hour to judge
    level: Level


def rejection_rate(status_rows: list[StatusRow] | None = None, now: datetime | None = None) -> RejectionRate:
    """Share of the last hour's decided bundles that were rejected, against the 5% and 10% lines."""
    thresholds = get_thresholds()
    status_rows = status_rows if status_rows is not None else bundle_status_last_hour(now)
    decided = sum(row.count for row in status_rows if row.status != BundleStatus.RECEIVED)
    rejected = sum(row.count for row in status_rows if row.status == BundleStatus.REJECTED)

    if decided < thresholds.rejection_rate_min_bundles or decided == 0:
        return RejectionRate(decided=decided, rejected=rejected, rate=None, level=Level.OK)

    rate = rejected / decided
    level = Level.OK
    if rate > thresholds.rejection_rate_escalation:
        level = Level.ESCALATION
    elif rate > thresholds.rejection_rate_warning:
        level = Level.WARNING
    return RejectionRate(decided=decided, rejected=rejected, rate=rate, level=level)


@dataclass(frozen=True)
class ReasonRow:
    code: str
    label: str
    count: int
    known: bool


def rejection_reasons(now: datetime | None = None) -> list[ReasonRow]:
    """Reason codes of the bundles rejected in the last 24 hours, most frequent first (Step 2).

    A code outside ReasonCode (or an empty one) is unknown: the runbook escalates those.
    """
    now = now or timezone.now()
    rows = (Bundle.objects.filter(status=BundleStatus.REJECTED, created_at__gt=now - REASON_WINDOW).order_by()
            .values("reason_code").annotate(count=Count("id")).order_by("-count", "reason_code"))

    result = []
    for row in rows:
        code = row["reason_code"]
        known = code in KNOWN_REASON_CODES
        label = str(ReasonCode(code).label) if known else (code or "(empty)")
        result.append(ReasonRow(code=code, label=label, count=row["count"], known=known))
    return result


def confirmed_fraud_last_24h(now: datetime | None = None) -> int:
    """Count bundles rejected as confirmed fraud in the last 24 hours, whenever they were received.

    An operator usually confirms fraud on a quarantined bundle received days earlier, so
    this filters on the last change (updated_at) through the reason_code index.
    """
    now = now or timezone.now()
    count, _ = capped_count(Bundle.objects.filter(reason_code=ReasonCode.CONFIRMED_FRAUD,
                                                  status=BundleStatus.REJECTED, updated_at__gt=now - REASON_WINDOW))
    return count


def recent_rejections(now: datetime | None = None, limit: int = 20) -> list[Bundle]:
    """Return the last rejected bundles of the past 24 hours, newest first (Step 2's list)."""
    now = now or timezone.now()
    return list(Bundle.objects.filter(status=BundleStatus.REJECTED, created_at__gt=now - REASON_WINDOW)
                .order_by("-created_at")
                .only("bundle_id", "device_id", "reason_code", "rejected_reason", "push_attempts", "created_at")
                [:limit])


@dataclass(frozen=True)
class QueueFigure:
    pending: int
    pending_capped: bool
    failed: int
    processing: int
    oldest_pending_at: datetime | None
    oldest_pending_age: timedelta | None
    level: Level
    problems: list[str] = field(default_factory=list)


def sync_queue_status(now: datetime | None = None) -> QueueFigure:
    """Pending sync queue rows and the age of the oldest one, against 500 rows and one hour (Step 4)."""
    now = now or timezone.now()
    thresholds = get_thresholds()
    live = SyncQueueItem.objects.filter(status__in=[QueueStatus.PENDING, QueueStatus.PROCESSING, QueueStatus.FAILED])

    pending, pending_capped = capped_count(live.filter(status=QueueStatus.PENDING))
    failed, _ = capped_count(live.filter(status=QueueStatus.FAILED))
    processing, _ = capped_count(live.filter(status=QueueStatus.PROCESSING))
    oldest = (SyncQueueItem.objects.filter(status=QueueStatus.PENDING).order_by("created_at")
              .values_list("created_at", flat=True).first())
    age = now - oldest if oldest else None

    problems = []
    if pending > thresholds.queue_size_max:
        problems.append(f"{pending}{'+' if pending_capped else ''} pending bundles (max {thresholds.queue_size_max})")
    if age is not None and age > thresholds.queue_oldest_max:
        problems.append(f"oldest pending bundle waits {format_duration(age)} "
                        f"(max {format_duration(thresholds.queue_oldest_max)})")
    level = Level.WARNING if problems else Level.OK
    return QueueFigure(pending=pending, pending_capped=pending_capped, failed=failed, processing=processing,
                       oldest_pending_at=oldest, oldest_pending_age=age, level=level, problems=problems)


@dataclass(frozen=True)
class WorkerRow:
    worker_name: str
    hostname: str
    last_run_at: datetime | None
    last_success_at: datetime | None
    last_error: str
    age: timedelta  # since the last success; since the last run or the row's update if it never succeeded
    stale: bool


def worker_heartbeats(now: datetime | None = None, limit: int = 100) -> list[WorkerRow]:
    """Return each reconciliation worker's last heartbeat, stale when its last success is older than 30 minutes."""
    now = now or timezone.now()
    max_age = get_thresholds().worker_heartbeat_max_age
    rows = []
    for heartbeat in WorkerHeartbeat.objects.order_by("worker_name")[:limit]:
        reference = heartbeat.last_success_at or heartbeat.last_run_at or heartbeat.updated_at
        age = now - reference
        rows.append(WorkerRow(worker_name=heartbeat.worker_name, hostname=heartbeat.hostname,
                              last_run_at=heartbeat.last_run_at, last_success_at=heartbeat.last_success_at,
                              last_error=heartbeat.last_error, age=age, stale=age > max_age))
    return rows


@dataclass(frozen=True)
class ReviewFigure:
    by_status: dict[str, int]
    stuck: int  # bundles waiting for review longer than REVIEW_STUCK_AFTER
    oldest_created_at: datetime | None
    level: Level
    capped_statuses: frozenset[str] = frozenset()  # statuses whose count stopped at COUNT_CAP
    stuck_capped: bool = False


def review_backlog(now: datetime | None = None) -> ReviewFigure:
    """Bundles in pending_review or quarantined, and how many of them have waited too long."""
    now = now or timezone.now()
    thresholds = get_thresholds()
    by_status = {}
    capped_statuses = set()
    for status in REVIEW_STATUSES:
        by_status[str(status)], capped = capped_count(Bundle.objects.filter(status=status))
        if capped:
            capped_statuses.add(str(status))
    stuck, stuck_capped = capped_count(Bundle.objects.filter(status__in=REVIEW_STATUSES,
                                                             created_at__lt=now - thresholds.review_stuck_after))
    oldest = (Bundle.objects.filter(status__in=REVIEW_STATUSES).order_by("created_at")
              .values_list("created_at", flat=True).first())
    level = Level.WARNING if stuck > thresholds.review_stuck_max else Level.OK
    return ReviewFigure(by_status=by_status, stuck=stuck, oldest_created_at=oldest, level=level,
                        capped_statuses=frozenset(capped_statuses), stuck_capped=stuck_capped)


def device_anomalies(limit: int = 20) -> list[Device]:
    """Devices with missing sequence numbers or a key conflict (a cloned key), conflicts first."""
    # NOTE: offline_devices has no index on these two columns, so this scans the device
    # table. That is thousands of rows rather than millions, and the LIMIT bounds the result.
    from django.db.models import F

    return list(Device.objects.filter(Q(missing_sequence_count__gt=0) | Q(key_conflict_detected_at__isnull=False))
                .order_by(F("key_conflict_detected_at").desc(nulls_last=True), "-missing_sequence_count",
                          "device_id")
                .only("device_id", "country", "status", "missing_sequence_count", "key_conflict_detected_at",
                      "last_seen_at")[:limit])


@dataclass(frozen=True)
class HourRow:
    hour: datetime
    counts: dict[str, int]
    pushes: int  # push attempts of the hour's bundles, repeats included
    total: int


def pushes_by_hour(now: datetime | None = None) -> list[HourRow]:
    """Bundles received in each of the last 24 hours by status, oldest hour first."""
    now = now or timezone.now()
    current_hour = now.replace(minute=0, second=0, microsecond=0)
    start = current_hour - timedelta(hours=CHART_HOURS - 1)
    rows = (Bundle.objects.filter(created_at__gte=start).order_by()
            .annotate(hour=TruncHour("created_at")).values("hour", "status")
            .annotate(count=Count("id"), pushes=Sum("push_attempts")))

    buckets = {start + timedelta(hours=i): ({}, [0]) for i in range(CHART_HOURS)}
    for row in rows:
        counts, pushes = buckets.setdefault(row["hour"], ({}, [0]))
        counts[row["status"]] = row["count"]
        pushes[0] += row["pushes"] or 0
    return [HourRow(hour=hour, counts=counts, pushes=pushes[0], total=sum(counts.values()))
            for hour, (counts, pushes) in sorted(buckets.items())]


@dataclass(frozen=True)
class LatencyFigure:
    count: int
    p50_seconds: float | None
    p95_seconds: float | None
    max_seconds: float | None


def validation_latency(now: datetime | None = None) -> LatencyFigure:
    """Seconds from receipt to decision for the bundles received in the last hour."""
    return _latency(Bundle.objects.filter(created_at__gt=(now or timezone.now()) - STATUS_WINDOW,
                                          validated_at__isnull=False), "created_at", "validated_at")


def reconciliation_latency(now: datetime | None = None) -> LatencyFigure:
    """Seconds from queueing to ledger posting for the queue rows processed in the last hour."""
    return _latency(SyncQueueItem.objects.filter(status=QueueStatus.DONE,
                                                 created_at__gt=(now or timezone.now()) - STATUS_WINDOW,
                                                 processed_at__isnull=False), "created_at", "processed_at")


def _latency(queryset, start_field: str, end_field: str) -> LatencyFigure:
    from django.db import connection

    sql, params = queryset.order_by().values("id").query.sql_with_params()
    table = queryset.model._meta.db_table
    # Percentiles need an ordered-set aggregate, which the ORM does not offer.
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT count(*), "
            f"percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM ({end_field} - {start_field}))), "
            f"percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM ({end_field} - {start_field}))), "
            f"max(extract(epoch FROM ({end_field} - {start_field}))) "
            f"FROM {table} WHERE id IN ({sql})", params)
        count, p50, p95, maximum = cursor.fetchone()
    return LatencyFigure(count=count, p50_seconds=_float(p50), p95_seconds=_float(p95), max_seconds=_float(maximum))


def _float(value) -> float | None:
    return float(value) if value is not None else None


def format_duration(delta: timedelta | None) -> str:
    """Format a duration as '2h05m', '14m', or '45s'."""
    if delta is None:
        return "-"
    seconds = int(delta.total_seconds())
    if seconds < 60:
        return f"{seconds}s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes}m"
    return f"{minutes // 60}h{minutes % 60:02d}m"
