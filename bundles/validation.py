"""Validation of a received bundle: policy checks, fraud scoring, and the final status.

Runs in a Celery task after the push commits. It is idempotent: a bundle that has left
`received` is never decided twice, so a redelivered task changes nothing.
"""

import json
import logging
from dataclasses import dataclass, field, replace

from django.db import connection, transaction
from django.utils import timezone

from audit.models import AuditAction
from audit.services import record
from devices.activity import add_activity, totals_by_local_day
from devices.models import Device
from molam_offline.db import server_binding_cursor
from policies.models import Policy
from reconciliation.services import enqueue_bundle

from .models import Bundle, BundleStatus, ReconciliationStatus, Transaction, TransactionStatus
from .reasons import ReasonCode, reason_text
from .sequences import SequenceConflict, track_sequence

logger = logging.getLogger(__name__)

STATUS_AUDIT_ACTIONS = {
    BundleStatus.ACCEPTED: AuditAction.BUNDLE_ACCEPTED,
    BundleStatus.REJECTED: AuditAction.BUNDLE_REJECTED,
    BundleStatus.QUARANTINED: AuditAction.BUNDLE_QUARANTINED,
    BundleStatus.PENDING_REVIEW: AuditAction.BUNDLE_PENDING_REVIEW,
}

# Bundles whose transactions count against the daily limits until an operator rejects them.
ACTIVITY_STATUSES = (BundleStatus.ACCEPTED, BundleStatus.PENDING_REVIEW, BundleStatus.QUARANTINED)


@dataclass
class TransactionFailure:
    check: str
    reason: str
    status: str = TransactionStatus.REJECTED


@dataclass
class Decision:
    """The outcome of validating one bundle."""

    status: str
    reason_code: str = ""
    rejected_reason: str | None = None
    failures: dict[int, TransactionFailure] = field(default_factory=dict)  # by position in the bundle
    details: dict = field(default_factory=dict)
    # The country policy the checks applied; None when the bundle was rejected before one was found.
    policy: object = None


def run_checks(bundle: Bundle, transactions: list[Transaction]) -> Decision:
    """Decide a bundle's status: policy checks first, then fraud scoring of what passed."""
    from .checks import run_policy_checks
    from .scoring import score_bundle

    decision = run_policy_checks(bundle, transactions)
    if decision.status != BundleStatus.ACCEPTED:
        return decision
    scored = score_bundle(bundle, transactions, decision)

    # The scorer may return a new Decision. The duplicates that the checks marked must
    # survive it, or a duplicate transaction would be accepted and posted twice.
    for position, failure in decision.failures.items():
        scored.failures.setdefault(position, failure)
    if scored.policy is None:
        scored.policy = decision.policy
    return scored


def validate_bundle(bundle_pk: int) -> str | None:
    """Validate a `received` bundle and store its decision; return the new status, or None if already decided."""
    device_id = Bundle.objects.filter(pk=bundle_pk).values_list("device_id", flat=True).first()
    if device_id is None:
        logger.error("Validation of bundle pk=%s skipped: not found", bundle_pk)
        return None

    with transaction.atomic():
        # Lock order everywhere: the device row, then its bundle rows. The device lock
        # serialises all validations of one device, which is what keeps the daily totals,
        # the duplicate lookup and the sequence numbers consistent between two bundles.
        device = Device.objects.select_for_update().filter(device_id=device_id).first()
        bundle = Bundle.objects.select_for_update().filter(pk=bundle_pk).first()
        if bundle is None or bundle.status != BundleStatus.RECEIVED:
            logger.info("Validation of bundle pk=%s (device %s) skipped: already %s", bundle_pk, device_id,
                        bundle.status if bundle else "deleted")
            return None

        logger.info("Validating bundle %s from device %s", bundle.bundle_id, device_id)
        if device is not None:
            bundle.device = device  # The locked row, so that the checks read no stale copy.
        transactions = list(bundle.transactions.order_by("position"))
        conflict = track_sequence(device, bundle) if device is not None else None
        decision = run_checks(bundle, transactions)
        if conflict is not None and decision.status != BundleStatus.REJECTED:
            decision = quarantine_for_conflict(decision, conflict)
        apply_decision(bundle, transactions, decision)

    logger.info("Bundle %s from device %s is %s %s", bundle.bundle_id, device_id, decision.status,
                decision.reason_code)
    return decision.status


def quarantine_for_conflict(decision: Decision, conflict: SequenceConflict) -> Decision:
    """Quarantine a bundle that reuses another bundle's sequence number, a sign of a cloned key.

    A policy rejection is kept, because a rejected bundle is never posted anyway.
    """
    others = ", ".join(conflict.earlier_bundle_ids)
    details = {**decision.details, "sequence_conflict_with": conflict.earlier_bundle_ids}
    if decision.reason_code:
        details["replaced_reason_code"] = decision.reason_code
    return replace(decision, status=BundleStatus.QUARANTINED, reason_code=ReasonCode.SEQUENCE_CONFLICT,
                   rejected_reason=reason_text(ReasonCode.SEQUENCE_CONFLICT,
                                               f"sequence {conflict.sequence} is already used by bundle "
                                               f"{others}: the device key may be cloned"),
                   details=details)


def apply_decision(bundle: Bundle, transactions: list[Transaction], decision: Decision) -> None:
    """Store a decision on a locked `received` bundle with its audit row, and queue it if accepted.

    The transactions of a bundle that is accepted, pending review or quarantined count in
    the device's daily totals, except its duplicates and failed transactions.
    """
    now = timezone.now()
    accepted_tx_status = TransactionStatus.ACCEPTED
    if decision.status == BundleStatus.REJECTED:
        accepted_tx_status = TransactionStatus.REJECTED
    elif decision.status != BundleStatus.ACCEPTED:
        accepted_tx_status = TransactionStatus.PENDING

    for tx in transactions:
        failure = decision.failures.get(tx.position)
        if failure is not None:
            tx.status, tx.failed_check, tx.failure_reason = failure.status, failure.check, failure.reason
        else:
            tx.status = accepted_tx_status
    _store_transaction_outcomes(transactions)

    if decision.status in ACTIVITY_STATUSES:
        counted = [tx for tx in transactions if not tx.failed_check]
        add_activity(bundle.device_id, totals_by_local_day(counted, _policy_time_zone(bundle, decision)))

    bundle.status = decision.status
    bundle.reason_code = decision.reason_code
    bundle.rejected_reason = decision.rejected_reason
    bundle.validated_at = now
    bundle.validation_attempts += 1
    scores = [tx.sira_score for tx in transactions if tx.sira_score is not None]
    bundle.max_sira_score = max(scores) if scores else None
    if decision.status == BundleStatus.ACCEPTED:
        bundle.reconciliation_status = ReconciliationStatus.QUEUED
    bundle.save(update_fields=["status", "reason_code", "rejected_reason", "validated_at", "validation_attempts",
                               "max_sira_score", "reconciliation_status", "updated_at"])

    details = dict(decision.details)
    failed = {tx.local_id: tx.failed_check for tx in transactions if tx.failed_check}
    if failed:
        details["failed_checks"] = failed
    record(STATUS_AUDIT_ACTIONS[decision.status], bundle_id=bundle.bundle_id, device_id=bundle.device_id,
           country=bundle.country, reason=decision.rejected_reason or "",
           old_values={"status": BundleStatus.RECEIVED},
           new_values={"status": decision.status, "reason_code": decision.reason_code},
           details=details)

    if decision.status == BundleStatus.ACCEPTED:
        enqueue_bundle(bundle)


# One statement for the whole bundle, with the rows as one JSON parameter. Django's
# bulk_update writes a CASE WHEN per column per row, which took more Python time to build
# than every other step of a validation together. A JSON text is quoted once, while
# psycopg's client-side binding escapes every element of an array parameter in Python.
STORE_OUTCOMES_SQL = """
UPDATE offline_transactions AS t
   SET status = v.status, failed_check = v.failed_check, failure_reason = v.failure_reason,
       sira_score = v.sira_score, sira_reasons = v.sira_reasons
  FROM jsonb_to_recordset(%s::jsonb)
       AS v(id bigint, status text, failed_check text, failure_reason text, sira_score smallint, sira_reasons jsonb)
 WHERE t.id = v.id
"""


def _store_transaction_outcomes(transactions: list[Transaction]) -> None:
    """Write status, failed check, failure reason and fraud score of every transaction of a bundle."""
    rows = [{"id": tx.pk, "status": str(tx.status), "failed_check": tx.failed_check,
             "failure_reason": tx.failure_reason, "sira_score": tx.sira_score, "sira_reasons": tx.sira_reasons}
            for tx in transactions]

    with server_binding_cursor() as cursor:
        cursor.execute(STORE_OUTCOMES_SQL, [json.dumps(rows)])
        updated = cursor.rowcount
    if updated != len(transactions):  # The caller holds the bundle's lock, so no row can be missing.
        raise RuntimeError(f"stored the outcome of {updated} of {len(transactions)} transactions")


def _policy_time_zone(bundle: Bundle, decision: Decision) -> str:
    if decision.policy is not None:
        return decision.policy.timezone
    return Policy.objects.get(country=bundle.country).timezone
