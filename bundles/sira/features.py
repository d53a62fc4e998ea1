"""History features of a bundle's transactions, the only input of the fraud scorer besides the policy.

`extract_features` is a pure function of a BundleContext. The database path
(`history.load_context`) and the in-memory evaluation on synthetic traffic
(`evaluation.evaluate`) build the same context, so both score the same way.
"""

import bisect
import statistics
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import NamedTuple, Protocol, Sequence

# How far back the device's own history goes, and the max rows it may contain.
DEVICE_LOOKBACK = timedelta(days=30)
DEVICE_HISTORY_LIMIT = 500
# How far around the bundle the senders' transactions on other devices are read, and the max rows.
SENDER_LOOKBACK = timedelta(hours=24)
SENDER_LOOKAHEAD = timedelta(minutes=15)
SENDER_HISTORY_LIMIT = 2000

VELOCITY_WINDOW = timedelta(minutes=10)
RECEIVER_WINDOW = timedelta(hours=1)
STRUCTURING_WINDOW = timedelta(hours=24)
OTHER_DEVICE_WINDOW = timedelta(minutes=15)
# An amount at or above this share of the per-transaction limit is "just under the limit".
NEAR_LIMIT_SHARE = Decimal("0.9")
# The usual amount is the median of the device's history once it has this many transactions.
MIN_HISTORY_FOR_USUAL_AMOUNT = 10


class TransactionLike(Protocol):
    local_id: str
    sender: str
    receiver: str
    amount: Decimal
    initiated_at: datetime


class PastTransaction(NamedTuple):
    """A transaction already stored, from this device or from another device of one of the senders.

    A named tuple, because a bundle's context reads up to 2,500 of them from one query and
    a frozen dataclass takes three times longer to create.
    """

    device_id: str
    local_id: str
    # The last four fields, in this order, are the identity that _known_transactions matches.
    sender: str
    receiver: str
    amount: Decimal
    initiated_at: datetime


@dataclass
class BundleContext:
    """Facts about a bundle, other than its transactions, that a scorer may use."""

    bundle_id: str
    device_id: str
    sequence: int
    sealed_at: datetime  # the bundle's created_at, device clock
    key_registered_at: datetime | None
    time_zone: str
    # The highest sequence number of the device's other bundles below this one, or None.
    previous_sequence: int | None
    # True when another bundle of the device has the same sequence number.
    sequence_conflict: bool
    # The latest initiated_at in the device's bundle with the highest sequence below this
    # one that was not rejected, or None.
    previous_bundle_latest: datetime | None = None
    device_history: list[PastTransaction] = field(default_factory=list)  # sorted by initiated_at
    sender_history: list[PastTransaction] = field(default_factory=list)  # other devices only


@dataclass(slots=True)
class TransactionFeatures:
    local_id: str
    amount: Decimal
    initiated_at: datetime
    device_tx_in_velocity_window: int  # this one included
    distinct_receivers_in_hour: int  # this one included
    usual_amount: Decimal | None  # median of the device's history, None while the history is short
    device_history_count: int
    key_age: timedelta | None  # from key registration to this transaction
    near_limit_count_24h: int  # near-limit amounts of this device or sender, this one included when near
    other_devices_of_sender: int  # distinct other devices of the sender within OTHER_DEVICE_WINDOW
    replay_of: str | None  # "device/local_id" of an identical earlier transaction
    sequence_gap: int  # sequence numbers missing just before this bundle
    sequence_conflict: bool
    clock_rollback: timedelta | None  # how far before the latest transaction of the device's previous bundle
    after_sealing: timedelta | None  # how far after the bundle's sealing time
    time_zone: str
    near_limit: bool = False
    limit: Decimal = Decimal(0)


def _identity(sender: str, receiver: str, amount: Decimal, initiated_at: datetime) -> tuple:
    return sender, receiver, amount, initiated_at


def _count_between(times: list[datetime], start: datetime, end: datetime) -> int:
    """Count sorted `times` in the half-open interval (start, end]."""
    return bisect.bisect_right(times, end) - bisect.bisect_right(times, start)


def _near_limit_times(timeline, sender_history, floor: Decimal) -> tuple[list[datetime], dict[str, list[datetime]]]:
    """Return the sorted times of near-limit amounts on the device, and per sender on any device."""
    device_times = []
    by_sender: dict[str, list[datetime]] = {}
    for moment, _receiver, sender, amount in timeline:
        if amount >= floor:
            device_times.append(moment)
            by_sender.setdefault(sender, []).append(moment)
    for past in sender_history:
        if past.amount >= floor:
            by_sender.setdefault(past.sender, []).append(past.initiated_at)
    for times in by_sender.values():
        times.sort()
    return device_times, by_sender


def _known_transactions(context: BundleContext) -> dict[tuple, tuple]:
    """Map each (sender, receiver, amount, initiated_at) of the stored history to its first transaction.

    The keys are the last four fields of a PastTransaction, so one slice builds each. The
    history is read in reverse, so that the first of equal keys wins, device history first.
    Each value starts with the device_id and local_id that a replay reason names.
    """
    history = context.device_history + context.sender_history
    return {past[2:]: past for past in reversed(history)}


def _sequence_gap(context: BundleContext) -> int:
    if context.previous_sequence is not None:
        return max(context.sequence - context.previous_sequence - 1, 0)
    if not context.device_history:
        return max(context.sequence - 1, 0)  # the device's first bundle to arrive
    return 0


def extract_features(context: BundleContext, transactions: Sequence[TransactionLike],
                     max_amount_per_transaction: Decimal) -> list[TransactionFeatures]:
    """Compute the features of each transaction of a bundle, in bundle order.

    The features of each transaction count the device's stored history and the bundle's
    other transactions.
    """
    near_limit_floor = max_amount_per_transaction * NEAR_LIMIT_SHARE
    history = context.device_history

    usual_amount = None
    if len(history) >= MIN_HISTORY_FOR_USUAL_AMOUNT:
        usual_amount = statistics.median(past.amount for past in history)

    # One timeline of the device, (initiated_at, receiver, sender, amount): the stored
    # history plus this bundle, sorted by time.
    timeline = sorted([(past.initiated_at, past.receiver, past.sender, past.amount) for past in history]
                      + [(tx.initiated_at, tx.receiver, tx.sender, tx.amount) for tx in transactions],
                      key=lambda row: row[0])
    times = [row[0] for row in timeline]
    near_times, near_by_sender = _near_limit_times(timeline, context.sender_history, near_limit_floor)
    other_by_sender: dict[str, list[PastTransaction]] = {}
    for past in context.sender_history:
        other_by_sender.setdefault(past.sender, []).append(past)

    known = _known_transactions(context)
    latest_before = context.previous_bundle_latest
    sequence_gap = _sequence_gap(context)

    features = []
    for tx in transactions:
        moment = tx.initiated_at
        start_hour = bisect.bisect_right(times, moment - RECEIVER_WINDOW)
        end_hour = bisect.bisect_right(times, moment)
        receivers = {timeline[index][1] for index in range(start_hour, end_hour)}

        near = tx.amount >= near_limit_floor
        near_count = _count_between(near_times, moment - STRUCTURING_WINDOW, moment)
        sender_near = _count_between(near_by_sender.get(tx.sender, []), moment - STRUCTURING_WINDOW, moment)
        near_count = max(near_count, sender_near)

        other_devices = {past.device_id for past in other_by_sender.get(tx.sender, ())
                         if abs(past.initiated_at - moment) <= OTHER_DEVICE_WINDOW}

        identity = _identity(tx.sender, tx.receiver, tx.amount, moment)
        origin = known.get(identity)
        replay_of = None
        if origin is None:
            known[identity] = (context.device_id, tx.local_id)
        else:
            replay_of = f"{origin[0]}/{origin[1]}"

        rollback = None
        if latest_before is not None and moment < latest_before:
            rollback = latest_before - moment
        after_sealing = moment - context.sealed_at if moment > context.sealed_at else None

        features.append(TransactionFeatures(
            local_id=tx.local_id,
            amount=tx.amount,
            initiated_at=moment,
            device_tx_in_velocity_window=_count_between(times, moment - VELOCITY_WINDOW, moment),
            distinct_receivers_in_hour=len(receivers),
            usual_amount=usual_amount,
            device_history_count=len(history),
            key_age=(moment - context.key_registered_at) if context.key_registered_at else None,
            near_limit_count_24h=near_count,
            other_devices_of_sender=len(other_devices),
            replay_of=replay_of,
            sequence_gap=sequence_gap,
            sequence_conflict=context.sequence_conflict,
            clock_rollback=rollback,
            after_sealing=after_sealing,
            time_zone=context.time_zone,
            near_limit=near,
            limit=max_amount_per_transaction,
        ))
    return features
