"""Validation of a received bundle: policy checks, fraud scoring, and the final status.

Runs in a Celery task after the push commits. It is idempotent: a bundle that has left
`received` is never decided twice, so a redelivered task changes nothing.
"""

import logging
from dataclasses import dataclass, field

from django.db import transaction
from django.utils import timezone

from audit.models import AuditAction
from audit.services import record
from reconciliation.services import enqueue_bundle

from .models import Bundle, BundleStatus, ReconciliationStatus, Transaction, TransactionStatus

logger = logging.getLogger(__name__)

STATUS_AUDIT_ACTIONS = {
    BundleStatus.ACCEPTED: AuditAction.BUNDLE_ACCEPTED,
    BundleStatus.REJECTED: AuditAction.BUNDLE_REJECTED,
    BundleStatus.QUARANTINED: AuditAction.BUNDLE_QUARANTINED,
    BundleStatus.PENDING_REVIEW: AuditAction.BUNDLE_PENDING_REVIEW,
}


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


def run_checks(bundle: Bundle, transactions: list[Transaction]) -> Decision:
    """Decide a bundle's status: policy checks first, then fraud scoring of what passed."""
    from .checks import run_policy_checks
    from .scoring import score_bundle

    decision = run_policy_checks(bundle, transactions)
    if decision.status != BundleStatus.ACCEPTED:
        return decision
    return score_bundle(bundle, transactions, decision)


def validate_bundle(bundle_pk: int) -> str | None:
    """Validate a `received` bundle and store its decision; return the new status, or None if already decided."""
    with transaction.atomic():
        bundle = Bundle.objects.select_for_update().filter(pk=bundle_pk).first()
        if bundle is None:
            logger.error("Validation of bundle pk=%s skipped: not found", bundle_pk)
            return None
        if bundle.status != BundleStatus.RECEIVED:
            logger.info("Validation of bundle %s (device %s) skipped: already %s", bundle.bundle_id,
                        bundle.device_id, bundle.status)
            return None

        logger.info("Validating bundle %s from device %s", bundle.bundle_id, bundle.device_id)
        transactions = list(bundle.transactions.order_by("position"))
        decision = run_checks(bundle, transactions)
        apply_decision(bundle, transactions, decision)

    logger.info("Bundle %s from device %s is %s %s", bundle.bundle_id, bundle.device_id, decision.status,
                decision.reason_code)
    return decision.status


def apply_decision(bundle: Bundle, transactions: list[Transaction], decision: Decision) -> None:
    """Store a decision on a locked `received` bundle with its audit row, and queue it if accepted."""
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
    Transaction.objects.bulk_update(transactions, ["status", "failed_check", "failure_reason", "sira_score",
                                                   "sira_reasons"])

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

    record(STATUS_AUDIT_ACTIONS[decision.status], bundle_id=bundle.bundle_id, device_id=bundle.device_id,
           country=bundle.country, reason=decision.rejected_reason or "",
           old_values={"status": BundleStatus.RECEIVED},
           new_values={"status": decision.status, "reason_code": decision.reason_code},
           details=decision.details)

    if decision.status == BundleStatus.ACCEPTED:
        enqueue_bundle(bundle)
