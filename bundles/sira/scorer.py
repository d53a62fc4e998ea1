"""Fraud scorers: the interface, the in-process rule scorer, and the one chosen by settings.

A scorer returns, for each transaction of a bundle, a score from 0 to 100 and the reasons
that add up to it. The rule scorer is a pure function of (features, policy): it reads no
database, so the evaluation on synthetic traffic runs it in memory.
"""

from dataclasses import dataclass, field
from datetime import timedelta
from functools import lru_cache
from typing import Sequence
from zoneinfo import ZoneInfo

from django.conf import settings
from django.utils.module_loading import import_string

from .features import BundleContext, TransactionFeatures, TransactionLike, extract_features
from .reasons import SiraReason, plain_amount, reason

MAX_SCORE = 100

# Points of each rule. Most rules need others to reach the default review threshold (60).
# A replay, a key conflict and the two clock rules reach it alone, because honest devices
# with a working clock and their own key never produce them.
POINTS = {
    SiraReason.VELOCITY: 25,
    SiraReason.AMOUNT_ABOVE_USUAL: 20,
    SiraReason.NEW_DEVICE: 15,
    SiraReason.MANY_RECEIVERS: 20,
    SiraReason.NEAR_LIMIT: 15,
    SiraReason.STRUCTURING: 45,
    SiraReason.NIGHT_HOURS: 15,
    SiraReason.SENDER_ON_OTHER_DEVICES: 45,
    SiraReason.REPLAYED_TRANSACTION: 70,
    SiraReason.SEQUENCE_GAP: 10,
    SiraReason.KEY_CONFLICT: 60,
    SiraReason.CLOCK_ROLLBACK: 60,
    SiraReason.INITIATED_AFTER_SEALING: 60,
}
# Stronger variants of three rules.
VELOCITY_HIGH_POINTS = 45
FAR_ABOVE_USUAL_POINTS = 30
SENDER_ON_MANY_DEVICES_POINTS = 65

VELOCITY_COUNT, VELOCITY_HIGH_COUNT = 8, 15
ABOVE_USUAL_FACTOR, FAR_ABOVE_USUAL_FACTOR = 5, 10
NEW_KEY_AGE = timedelta(hours=72)
MANY_RECEIVERS_COUNT = 12
STRUCTURING_COUNT = 3
NIGHT_HOURS = range(0, 5)  # local hours 00:00 to 04:59
SEQUENCE_GAP_COUNT = 5
CLOCK_ROLLBACK_MIN = timedelta(minutes=30)
AFTER_SEALING_MIN = timedelta(minutes=5)


class ScorerUnavailable(Exception):
    """The scorer failed or timed out; the bundle must go to review."""


@dataclass
class Score:
    local_id: str
    score: int
    reasons: list[dict] = field(default_factory=list)


class Scorer:
    """Interface of a fraud scorer. Implementations raise ScorerUnavailable when they cannot score."""

    name = "scorer"

    def score(self, context: BundleContext, transactions: Sequence[TransactionLike], policy) -> list[Score]:
        raise NotImplementedError


@lru_cache(maxsize=64)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def _minutes(delta: timedelta) -> int:
    return int(delta.total_seconds() // 60)


def score_features(features: TransactionFeatures) -> Score:
    """Score one transaction from its features: the sum of the rules that fire, capped at 100."""
    reasons = []

    count = features.device_tx_in_velocity_window
    if count >= VELOCITY_HIGH_COUNT:
        reasons.append(reason(SiraReason.VELOCITY, VELOCITY_HIGH_POINTS,
                              f"{count} transactions on the device within 10 minutes"))
    elif count >= VELOCITY_COUNT:
        reasons.append(reason(SiraReason.VELOCITY, POINTS[SiraReason.VELOCITY],
                              f"{count} transactions on the device within 10 minutes"))

    usual = features.usual_amount
    if usual:
        ratio = features.amount / usual
        detail = f"amount {plain_amount(features.amount)} is {ratio:.0f} times the usual {plain_amount(usual)}"
        if ratio >= FAR_ABOVE_USUAL_FACTOR:
            reasons.append(reason(SiraReason.AMOUNT_ABOVE_USUAL, FAR_ABOVE_USUAL_POINTS, detail))
        elif ratio >= ABOVE_USUAL_FACTOR:
            reasons.append(reason(SiraReason.AMOUNT_ABOVE_USUAL, POINTS[SiraReason.AMOUNT_ABOVE_USUAL], detail))

    if features.key_age is not None and features.key_age < NEW_KEY_AGE:
        hours = int(features.key_age.total_seconds() // 3600)
        if hours >= 0:
            detail = f"key registered {hours} hours before the transaction"
        else:
            detail = f"transaction {-hours} hours before the key was registered"
        reasons.append(reason(SiraReason.NEW_DEVICE, POINTS[SiraReason.NEW_DEVICE], detail))

    if features.distinct_receivers_in_hour >= MANY_RECEIVERS_COUNT:
        reasons.append(reason(SiraReason.MANY_RECEIVERS, POINTS[SiraReason.MANY_RECEIVERS],
                              f"{features.distinct_receivers_in_hour} distinct receivers within an hour"))

    if features.near_limit:
        share = features.amount * 100 / features.limit
        detail = (f"amount {plain_amount(features.amount)} is {share:.1f}% of the limit "
                  f"{plain_amount(features.limit)}")
        reasons.append(reason(SiraReason.NEAR_LIMIT, POINTS[SiraReason.NEAR_LIMIT], detail))
        if features.near_limit_count_24h >= STRUCTURING_COUNT:
            reasons.append(reason(SiraReason.STRUCTURING, POINTS[SiraReason.STRUCTURING],
                                  f"{features.near_limit_count_24h} amounts just under the limit within 24 hours "
                                  f"from this device or sender"))

    local = features.initiated_at.astimezone(_zone(features.time_zone))
    if local.hour in NIGHT_HOURS:
        reasons.append(reason(SiraReason.NIGHT_HOURS, POINTS[SiraReason.NIGHT_HOURS],
                              f"{local:%H:%M} local time in {features.time_zone}"))

    others = features.other_devices_of_sender
    if others >= 2:
        reasons.append(reason(SiraReason.SENDER_ON_OTHER_DEVICES, SENDER_ON_MANY_DEVICES_POINTS,
                              f"sender paid on {others} other devices within 15 minutes"))
    elif others == 1:
        reasons.append(reason(SiraReason.SENDER_ON_OTHER_DEVICES, POINTS[SiraReason.SENDER_ON_OTHER_DEVICES],
                              "sender paid on another device within 15 minutes"))

    if features.replay_of:
        reasons.append(reason(SiraReason.REPLAYED_TRANSACTION, POINTS[SiraReason.REPLAYED_TRANSACTION],
                              f"same sender, receiver, amount and time as {features.replay_of}"))

    if features.sequence_gap >= SEQUENCE_GAP_COUNT:
        reasons.append(reason(SiraReason.SEQUENCE_GAP, POINTS[SiraReason.SEQUENCE_GAP],
                              f"{features.sequence_gap} sequence numbers missing before this bundle"))

    if features.sequence_conflict:
        reasons.append(reason(SiraReason.KEY_CONFLICT, POINTS[SiraReason.KEY_CONFLICT],
                              "another bundle of the device has the same sequence number"))

    if features.clock_rollback is not None and features.clock_rollback >= CLOCK_ROLLBACK_MIN:
        reasons.append(reason(SiraReason.CLOCK_ROLLBACK, POINTS[SiraReason.CLOCK_ROLLBACK],
                              f"{_minutes(features.clock_rollback)} minutes before the device's latest transaction "
                              f"in an earlier bundle"))

    if features.after_sealing is not None and features.after_sealing >= AFTER_SEALING_MIN:
        reasons.append(reason(SiraReason.INITIATED_AFTER_SEALING, POINTS[SiraReason.INITIATED_AFTER_SEALING],
                              f"{_minutes(features.after_sealing)} minutes after the bundle was sealed"))

    total = min(sum(item["points"] for item in reasons), MAX_SCORE)
    return Score(local_id=features.local_id, score=total, reasons=reasons)


class RuleScorer(Scorer):
    """The default scorer: explainable rules on the device's and the senders' history, in-process."""

    name = "rules"

    def score(self, context: BundleContext, transactions: Sequence[TransactionLike], policy) -> list[Score]:
        features = extract_features(context, transactions, policy.max_amount_per_transaction)
        return [score_features(item) for item in features]


def get_scorer() -> Scorer:
    """Instantiate the scorer class named by the SIRA_SCORER setting."""
    return import_string(settings.SIRA_SCORER)()
