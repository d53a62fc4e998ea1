"""Measure a scorer on labelled synthetic traffic, in memory, with the thresholds of a policy.

Bundles are scored in arrival order against an in-memory store that returns the same
history as the database lookups (same windows, same row limits), so the numbers measure
the scorer as the validation pipeline runs it.
"""

import bisect
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from .features import (DEVICE_HISTORY_LIMIT, DEVICE_LOOKBACK, SENDER_HISTORY_LIMIT, SENDER_LOOKAHEAD, SENDER_LOOKBACK,
                       BundleContext, PastTransaction)
from .scorer import Scorer
from .synthetic import HONEST, PATTERNS, SyntheticBundle, Traffic

ACCEPTED, PENDING_REVIEW, QUARANTINED = "accepted", "pending_review", "quarantined"


class HistoryStore:
    """Scored transactions by device and by sender, as the database would return them."""

    def __init__(self):
        self.by_device: dict[str, list[PastTransaction]] = defaultdict(list)  # sorted by initiated_at
        self.device_times: dict[str, list[datetime]] = defaultdict(list)
        self.by_sender: dict[str, list[PastTransaction]] = defaultdict(list)
        self.sequences: dict[str, list[int]] = defaultdict(list)  # sorted
        self.latest_by_sequence: dict[tuple[str, int], datetime] = {}

    def context(self, bundle: SyntheticBundle, key_registered_at: datetime, time_zone: str) -> BundleContext:
        times = [tx.initiated_at for tx in bundle.transactions]
        earliest, latest = min(times), max(times)

        device_rows = self.by_device[bundle.device_id]
        start = bisect.bisect_left(self.device_times[bundle.device_id], earliest - DEVICE_LOOKBACK)
        device_history = device_rows[start:][-DEVICE_HISTORY_LIMIT:]

        sender_history = []
        for sender in {tx.sender for tx in bundle.transactions}:
            sender_history.extend(past for past in self.by_sender.get(sender, ())
                                  if past.device_id != bundle.device_id
                                  and earliest - SENDER_LOOKBACK <= past.initiated_at <= latest + SENDER_LOOKAHEAD)
        sender_history.sort(key=lambda past: past.initiated_at)
        sender_history = sender_history[-SENDER_HISTORY_LIMIT:]

        sequences = self.sequences[bundle.device_id]
        position = bisect.bisect_left(sequences, bundle.sequence)
        previous_sequence = sequences[position - 1] if position else None
        conflict = position < len(sequences) and sequences[position] == bundle.sequence
        previous_latest = None
        if previous_sequence is not None:
            previous_latest = self.latest_by_sequence[(bundle.device_id, previous_sequence)]

        return BundleContext(bundle_id=bundle.bundle_id, device_id=bundle.device_id, sequence=bundle.sequence,
                             sealed_at=bundle.sealed_at, key_registered_at=key_registered_at, time_zone=time_zone,
                             previous_sequence=previous_sequence, sequence_conflict=conflict,
                             previous_bundle_latest=previous_latest,
                             device_history=device_history, sender_history=sender_history)

    def add(self, bundle: SyntheticBundle) -> None:
        rows = self.by_device[bundle.device_id]
        times = self.device_times[bundle.device_id]
        for tx in bundle.transactions:
            past = PastTransaction(bundle.device_id, tx.local_id, tx.sender, tx.receiver, tx.amount, tx.initiated_at)
            index = bisect.bisect_right(times, tx.initiated_at)
            times.insert(index, tx.initiated_at)
            rows.insert(index, past)
            self.by_sender[tx.sender].append(past)
        bisect.insort(self.sequences[bundle.device_id], bundle.sequence)
        # Of two bundles with one number (a cloned key), the later one replaces the earlier one here.
        self.latest_by_sequence[(bundle.device_id, bundle.sequence)] = max(tx.initiated_at
                                                                          for tx in bundle.transactions)


@dataclass
class Counts:
    transactions: int = 0
    flagged: int = 0  # in a pending_review or quarantined bundle
    quarantined: int = 0


@dataclass
class EvaluationResult:
    honest: Counts = field(default_factory=Counts)
    fraud: Counts = field(default_factory=Counts)
    by_pattern: dict[str, Counts] = field(default_factory=lambda: {pattern: Counts() for pattern in PATTERNS})
    bundles: dict[str, int] = field(default_factory=lambda: {ACCEPTED: 0, PENDING_REVIEW: 0, QUARANTINED: 0})
    scoring_seconds: float = 0.0

    @property
    def recall(self) -> float:
        return self.fraud.flagged / self.fraud.transactions if self.fraud.transactions else 0.0

    @property
    def false_positive_rate(self) -> float:
        return self.honest.flagged / self.honest.transactions if self.honest.transactions else 0.0

    def precision(self, pattern: str | None = None) -> float:
        """Share of flagged transactions that are fraud; for a pattern, as if it were the only fraud."""
        true_positives = self.fraud.flagged if pattern is None else self.by_pattern[pattern].flagged
        flagged = true_positives + self.honest.flagged
        return true_positives / flagged if flagged else 0.0

    def pattern_recall(self, pattern: str) -> float:
        counts = self.by_pattern[pattern]
        return counts.flagged / counts.transactions if counts.transactions else 0.0

    @property
    def transactions(self) -> int:
        return self.honest.transactions + self.fraud.transactions


def bundle_status(max_score: int, policy) -> str:
    if max_score >= policy.sira_quarantine_threshold:
        return QUARANTINED
    if max_score >= policy.sira_review_threshold:
        return PENDING_REVIEW
    return ACCEPTED


def evaluate(traffic: Traffic, scorer: Scorer, policy) -> EvaluationResult:
    """Score every bundle in arrival order and count where honest and fraudulent transactions land."""
    store = HistoryStore()
    result = EvaluationResult()

    for bundle in traffic.bundles:
        device = traffic.devices[bundle.device_id]
        context = store.context(bundle, device.key_registered_at, policy.timezone)
        started = time.perf_counter()
        scores = scorer.score(context, bundle.transactions, policy)
        result.scoring_seconds += time.perf_counter() - started
        status = bundle_status(max(score.score for score in scores), policy)
        result.bundles[status] += 1

        for tx in bundle.transactions:
            counts = [result.honest] if tx.label == HONEST else [result.fraud, result.by_pattern[tx.label]]
            for item in counts:
                item.transactions += 1
                item.flagged += status != ACCEPTED
                item.quarantined += status == QUARANTINED
        store.add(bundle)
    return result
