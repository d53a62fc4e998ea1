"""Fraud scorers for tests of the policy checks, which fraud scoring must not disturb."""

from bundles.sira.scorer import Score, Scorer


class ZeroScorer(Scorer):
    """Scores every transaction 0, so each bundle's status comes from the policy checks alone."""

    name = "zero"

    def score(self, context, transactions, policy) -> list[Score]:
        return [Score(local_id=tx.local_id, score=0) for tx in transactions]
