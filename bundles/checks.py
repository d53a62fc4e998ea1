"""Policy checks of a received bundle against its country's policy."""

from .models import Bundle, BundleStatus, Transaction
from .validation import Decision


def run_policy_checks(bundle: Bundle, transactions: list[Transaction]) -> Decision:
    """Return an accepted Decision, or a rejection with its reason.

    TODO: country policies, clock skew, age, daily limits, duplicates and sequence
    numbers are not checked yet; every bundle that passed ingest is accepted.
    """
    return Decision(status=BundleStatus.ACCEPTED)
