"""Everything the runbook's Steps 2 and 3 and its issue diagnoses look up for one bundle."""

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.utils import timezone

from audit.models import AuditLog
from bundles.models import Bundle, BundleStatus, ReconciliationStatus, Transaction
from bundles.reasons import ReasonCode
from devices.models import Device, DeviceActivity
from policies.models import Policy
from reconciliation.models import QueueStatus, SyncQueueItem

from .figures import KNOWN_REASON_CODES
from .runbook import RunbookIssue, issue_for
from .thresholds import Level, get_thresholds

AUDIT_LIMIT = 50
TRANSACTION_LIMIT = 20
ACTIVITY_DAYS = 7
# A bundle still `received` after this long lost its validation task (the sweep retries it).
VALIDATION_OVERDUE = timedelta(minutes=5)


@dataclass
class Diagnosis:
    bundle: Bundle
    device: Device | None
    policy: Policy | None
    transactions: list[Transaction]
    audit_rows: list[AuditLog]
    queue_items: list[SyncQueueItem]
    activity: list[DeviceActivity]
    issue: RunbookIssue | None
    level: Level
    findings: list[str] = field(default_factory=list)


def diagnose_bundle(bundle_id: str, now: datetime | None = None) -> Diagnosis:
    """Collect a bundle's device, policy, transactions, audit trail and queue rows, and match a runbook issue.

    Raises Bundle.DoesNotExist for an unknown bundle_id.
    """
    now = now or timezone.now()
    thresholds = get_thresholds()
    bundle = Bundle.objects.get(bundle_id=bundle_id)
    device = Device.objects.filter(device_id=bundle.device_id).first()
    country = bundle.country or (device.country if device else "")
    policy = Policy.objects.filter(country=country).first() if country else None
    transactions = list(bundle.transactions.order_by("-sira_score", "position")[:TRANSACTION_LIMIT])
    audit_rows = list(AuditLog.objects.filter(bundle_id=bundle.bundle_id).order_by("-created_at", "-id")[:AUDIT_LIMIT])
    queue_items = list(SyncQueueItem.objects.filter(bundle_id=bundle.bundle_id).order_by("-created_at")[:10])

    findings = []
    level = Level.OK
    live = [item for item in queue_items if item.status in (QueueStatus.PENDING, QueueStatus.FAILED)]
    queue_stuck = any(now - item.created_at > thresholds.queue_oldest_max for item in live)
    dead = any(item.status == QueueStatus.DEAD for item in queue_items)

    if bundle.status == BundleStatus.RECEIVED and now - bundle.updated_at > VALIDATION_OVERDUE:
        findings.append(f"still awaiting validation {_age(now, bundle.created_at)} after receipt")
        level = Level.WARNING
    if bundle.status in (BundleStatus.REJECTED, BundleStatus.QUARANTINED, BundleStatus.PENDING_REVIEW):
        findings.append(f"{bundle.status}: {bundle.rejected_reason or bundle.reason_code or 'no reason stored'}")
        level = Level.WARNING
    if bundle.status == BundleStatus.REJECTED and bundle.reason_code not in KNOWN_REASON_CODES:
        findings.append(f"unknown rejection reason {bundle.reason_code!r}: escalate")
        level = Level.ESCALATION
    if bundle.reason_code == ReasonCode.CONFIRMED_FRAUD:
        findings.append("confirmed fraud: escalate to the security team")
        level = Level.ESCALATION
    if queue_stuck:
        findings.append(f"queued for reconciliation more than {_age(now, now - thresholds.queue_oldest_max)} ago "
                        "and not posted: the reconciliation worker may be stuck")
        level = max(level, Level.WARNING)
    if dead:
        findings.append("its sync queue row is dead-lettered: requeue it after fixing the cause")
        level = max(level, Level.WARNING)
    if bundle.reconciliation_status in (ReconciliationStatus.FAILED, ReconciliationStatus.PARTIAL):
        findings.append(f"reconciliation {bundle.reconciliation_status}")
        level = max(level, Level.WARNING)
    if device is None:
        findings.append(f"device {bundle.device_id} is not registered")

    issue = issue_for(status=bundle.status, reason_code=bundle.reason_code, queue_stuck=queue_stuck or dead)
    activity = []
    if device is not None and issue is not None and issue.number == 4:
        since = timezone.localdate(now) - timedelta(days=ACTIVITY_DAYS)
        activity = list(DeviceActivity.objects.filter(device_id=device.device_id, activity_date__gte=since)
                        .order_by("-activity_date"))

    return Diagnosis(bundle=bundle, device=device, policy=policy, transactions=transactions, audit_rows=audit_rows,
                     queue_items=queue_items, activity=activity, issue=issue, level=level, findings=findings)


def _age(now: datetime, then: datetime) -> str:
    from .figures import format_duration

    return format_duration(now - then)
