"""Fraud scoring (SIRA) of bundles that passed the policy checks.

Every transaction gets `sira_score` and `sira_reasons`; the bundle's highest score against
the country's thresholds decides accepted, pending_review or quarantined. A scorer that
fails or times out never lets a bundle through: the bundle goes to pending_review.
"""

import logging
import time

from policies.models import Policy

from .models import Bundle, BundleStatus, Transaction
from .reasons import ReasonCode, reason_text
from .sira.history import load_context
from .sira.scorer import Score, ScorerUnavailable, get_scorer
from .validation import Decision

logger = logging.getLogger(__name__)


def _policy_for(bundle: Bundle) -> Policy:
    policy = Policy.objects.filter(country=bundle.country, is_active=True).first()
    if policy is None:
        # NOTE: a country without an active policy is scored with the model's defaults
        # (review at 60, quarantine at 80, Africa/Dakar) rather than failing the bundle.
        logger.warning("No active policy for country %r of bundle %s (device %s); scoring with default thresholds",
                       bundle.country, bundle.bundle_id, bundle.device_id)
        policy = Policy(country=bundle.country or "SN", currency=bundle.currency or "XOF")
    return policy


def score_bundle(bundle: Bundle, transactions: list[Transaction], decision: Decision) -> Decision:
    """Score each transaction and return the decision: accepted, pending_review or quarantined.

    Transactions that the policy checks already failed (duplicates, for example) are not
    scored, because a duplicate of a stored transaction would look like a replay.
    """
    transactions = [tx for tx in transactions if tx.position not in decision.failures]
    if not transactions:
        return decision
    # The policy checks read the active policy of the device's country moments ago in this
    # transaction. Reading it again costs a query per bundle for the same row.
    policy = decision.policy
    if policy is None or not policy.is_active or policy.country != bundle.country:
        policy = _policy_for(bundle)

    # A database error here propagates and leaves the bundle `received`, so the
    # received-bundle sweep validates it again later.
    context = load_context(bundle, transactions, policy.timezone)

    started = time.perf_counter()
    try:
        scorer = get_scorer()
        scores = scorer.score(context, transactions, policy)
        if len(scores) != len(transactions):
            raise ScorerUnavailable(f"scorer returned {len(scores)} scores for {len(transactions)} transactions")
    except Exception as error:  # noqa: BLE001 - any scorer failure must send the bundle to review
        logger.error("Fraud scoring of bundle %s (device %s) failed, sending it to review: %r", bundle.bundle_id,
                     bundle.device_id, error)
        return Decision(status=BundleStatus.PENDING_REVIEW, reason_code=ReasonCode.SCORER_UNAVAILABLE,
                        rejected_reason=reason_text(ReasonCode.SCORER_UNAVAILABLE, f"fraud scorer failed: {error}"),
                        failures=decision.failures, details={**decision.details, "scorer_error": repr(error)[:500]})

    for tx, result in zip(transactions, scores):
        tx.sira_score = result.score
        tx.sira_reasons = result.reasons
    elapsed_ms = (time.perf_counter() - started) * 1000
    logger.info("Scored bundle %s (device %s): %d transactions in %.1f ms, highest score %d", bundle.bundle_id,
                bundle.device_id, len(transactions), elapsed_ms, max(result.score for result in scores))

    return decide(decision, scores, policy)


def decide(decision: Decision, scores: list[Score], policy) -> Decision:
    """Apply the policy's thresholds to the highest score of a bundle."""
    top = max(scores, key=lambda result: result.score)
    if top.score >= policy.sira_quarantine_threshold:
        status, threshold = BundleStatus.QUARANTINED, policy.sira_quarantine_threshold
    elif top.score >= policy.sira_review_threshold:
        status, threshold = BundleStatus.PENDING_REVIEW, policy.sira_review_threshold
    else:
        return decision

    codes = ", ".join(item["code"] for item in top.reasons)
    detail = (f"fraud score {top.score} on {top.local_id} is at or above the {policy.country} threshold "
              f"{threshold} ({codes})")
    details = {**decision.details, "sira": {"max_score": top.score, "local_id": top.local_id,
                                            "threshold": threshold}}
    return Decision(status=status, reason_code=ReasonCode.HIGH_FRAUD_SCORE,
                    rejected_reason=reason_text(ReasonCode.HIGH_FRAUD_SCORE, detail), failures=decision.failures,
                    details=details)
