"""Fraud scoring (SIRA) of bundles that passed the policy checks."""

from .models import Bundle, Transaction
from .validation import Decision


def score_bundle(bundle: Bundle, transactions: list[Transaction], decision: Decision) -> Decision:
    """Score each transaction and return the decision: accepted, pending_review or quarantined.

    TODO: no scorer yet; the policy decision stands unchanged.
    """
    return decision
