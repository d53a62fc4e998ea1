"""Labelled synthetic traffic: honest merchants and agents, plus injected fraud patterns.

Everything is drawn from one seeded random.Random, so a seed and a mix always give the
same traffic. Amounts are XOF with the Senegal policy's limits; times are in UTC, which
is also Africa/Dakar's time.
"""

import bisect
import math
import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal

HONEST = "honest"
BURST = "burst"
STRUCTURING = "structuring"
DOUBLE_SPENDING = "double_spending"
REPLAY = "replay"
CLONED_KEY = "cloned_key"
CLOCK_TAMPERING = "clock_tampering"
PATTERNS = (BURST, STRUCTURING, DOUBLE_SPENDING, REPLAY, CLONED_KEY, CLOCK_TAMPERING)

START = datetime(2026, 11, 2, tzinfo=timezone.utc)
LIMIT = Decimal(100_000)  # max_amount_per_transaction of the seeded SN policy
MAX_TX_PER_BUNDLE = 50


@dataclass
class TrafficMix:
    """How much traffic to generate: honest devices, days, and incidents per fraud pattern."""

    merchants: int = 120
    agents: int = 40
    days: int = 7
    incidents: dict = field(default_factory=lambda: {pattern: 10 for pattern in PATTERNS})


@dataclass(slots=True)
class SyntheticTransaction:
    local_id: str
    type: str
    amount: Decimal
    sender: str
    receiver: str
    initiated_at: datetime
    label: str = HONEST
    currency: str = "XOF"


@dataclass
class SyntheticBundle:
    bundle_id: str
    device_id: str
    sequence: int
    sealed_at: datetime
    arrives_at: datetime
    transactions: list[SyntheticTransaction]


@dataclass
class SyntheticDevice:
    device_id: str
    tenant_type: str
    key_registered_at: datetime
    wallet: str
    usual_amount: Decimal
    daily_rate: float
    open_hours: tuple[int, int]
    customers: list[str]
    next_local_id: int = 1
    # (sealed_at, transactions, kind) before sequence numbers are given; kind "clone" reuses numbers.
    pending: list = field(default_factory=list)

    def local_id(self) -> str:
        value = f"tx-{self.next_local_id:06d}"
        self.next_local_id += 1
        return value


@dataclass
class Traffic:
    devices: dict[str, SyntheticDevice]
    bundles: list[SyntheticBundle]  # in arrival order

    @property
    def transactions(self):
        for bundle in self.bundles:
            yield from bundle.transactions


class Generator:
    def __init__(self, seed: int = 7, mix: TrafficMix | None = None):
        self.random = random.Random(seed)
        self.mix = mix or TrafficMix()
        self.devices: dict[str, SyntheticDevice] = {}
        self.phone_counter = 0

    # Helpers ---------------------------------------------------------------------------

    def phone(self) -> str:
        self.phone_counter += 1
        return f"+22177{self.phone_counter:07d}"

    def xof(self, value: float) -> Decimal:
        return Decimal(max(int(round(value / 25.0)) * 25, 25))

    def moment(self, day: int, hour_from: float, hour_to: float) -> datetime:
        hours = self.random.uniform(hour_from, hour_to)
        return START + timedelta(days=day, hours=hours)

    def honest_amount(self, device: SyntheticDevice) -> Decimal:
        amount = float(device.usual_amount) * math.exp(self.random.gauss(0, 0.6))
        if self.random.random() < 0.005:
            amount *= self.random.uniform(3, 6)  # a rare big purchase or cash-out
        return min(self.xof(amount), self.xof(float(LIMIT) * 0.88))

    # Honest traffic ------------------------------------------------------------------------

    def make_device(self, name: str, tenant_type: str, *, registered_at: datetime | None = None) -> SyntheticDevice:
        if registered_at is None:
            registered_at = START - timedelta(days=self.random.uniform(10, 400))
        if tenant_type == "merchant":
            usual = self.xof(self.random.choice([500, 1000, 1500, 2500, 5000, 10000]) * self.random.uniform(0.8, 1.5))
            rate = self.random.uniform(5, 40)
            night_shop = self.random.random() < 0.1
            open_hours = (8, 26) if night_shop else (7, 21)
            customers = [self.phone() for _ in range(self.random.randint(40, 250))]
        else:
            usual = self.xof(self.random.uniform(5000, 30000))
            rate = self.random.uniform(10, 40)
            open_hours = (7, 22)
            customers = [self.phone() for _ in range(self.random.randint(100, 400))]
        device = SyntheticDevice(device_id=name, tenant_type=tenant_type, key_registered_at=registered_at,
                                 wallet=self.phone(), usual_amount=usual, daily_rate=rate, open_hours=open_hours,
                                 customers=customers)
        self.devices[name] = device
        return device

    def honest_day(self, device: SyntheticDevice, day: int) -> list[SyntheticTransaction]:
        count = max(int(self.random.gauss(device.daily_rate, device.daily_rate / 4)), 0)
        start_hour, end_hour = device.open_hours
        times = sorted(self.moment(day, start_hour, end_hour) for _ in range(count))
        transactions = []
        for moment in times:
            if moment < device.key_registered_at:
                continue
            customer = self.random.choice(device.customers)
            if device.tenant_type == "merchant":
                tx_type, sender, receiver = "merchant_payment", customer, device.wallet
            elif self.random.random() < 0.5:
                tx_type, sender, receiver = "cash_in", device.wallet, customer
            else:
                tx_type, sender, receiver = "cash_out", customer, device.wallet
            amount = self.honest_amount(device)
            if device.tenant_type == "agent" and self.random.random() < 0.003:
                amount = self.xof(float(LIMIT) * self.random.uniform(0.9, 0.99))  # a large honest cash-out
            transactions.append(SyntheticTransaction(device.local_id(), tx_type, amount, sender, receiver, moment))
        return transactions

    def seal_honest(self, device: SyntheticDevice, transactions: list[SyntheticTransaction],
                    boundaries: list[datetime]) -> None:
        """Group a device's honest transactions into bundles, one per offline stretch of a few hours.

        No bundle spans a boundary: the device seals before a fraud bundle that it seals itself.
        """
        boundaries = sorted(boundaries)
        batch: list[SyntheticTransaction] = []
        window_end = None
        for tx in transactions:
            crossed = [b for b in boundaries if batch and batch[-1].initiated_at < b <= tx.initiated_at]
            if batch and (crossed or tx.initiated_at > window_end or len(batch) >= MAX_TX_PER_BUNDLE):
                last = batch[-1].initiated_at
                sealed_at = last + timedelta(minutes=self.random.uniform(1, 30))
                if crossed:
                    sealed_at = min(sealed_at, last + (crossed[0] - last) * self.random.uniform(0.1, 0.9))
                self.pend(device, batch, sealed_at=sealed_at)
                batch = []
            if not batch:
                window_end = tx.initiated_at + timedelta(hours=self.random.uniform(2, 8))
            batch.append(tx)
        if batch:
            self.pend(device, batch)

    def pend(self, device: SyntheticDevice, transactions: list[SyntheticTransaction], *, kind: str = "normal",
             sealed_at: datetime | None = None) -> None:
        if sealed_at is None:
            sealed_at = max(tx.initiated_at for tx in transactions) + timedelta(minutes=self.random.uniform(1, 30))
        device.pending.append((sealed_at, transactions, kind))

    # Fraud patterns ------------------------------------------------------------------------
    # Each returns the moment the device seals the fraud bundle itself, or None when a second
    # phone seals it, so that the device's honest bundles end before that moment.

    def burst(self, device: SyntheticDevice, day: int, honest: list[SyntheticTransaction]) -> datetime:
        """Inject a burst: a stolen phone drains wallets, 15 to 30 payments to new receivers within ten minutes."""
        start = self.moment(day, 9, 20)
        honest[:] = [tx for tx in honest if tx.initiated_at < start]  # the owner no longer has the phone
        senders = [self.random.choice(device.customers) for _ in range(self.random.randint(1, 3))]
        transactions = []
        for _ in range(self.random.randint(15, 30)):
            moment = start + timedelta(seconds=self.random.uniform(0, 600))
            amount = self.xof(float(device.usual_amount) * self.random.uniform(1, 4))
            transactions.append(SyntheticTransaction(device.local_id(), "p2p", amount, self.random.choice(senders),
                                                     self.phone(), moment, BURST))
        transactions.sort(key=lambda tx: tx.initiated_at)
        self.pend(device, transactions)
        return start

    def structuring(self, device: SyntheticDevice, day: int, honest: list[SyntheticTransaction]) -> datetime:
        """Inject structuring: a colluding agent pays just under the per-transaction limit for a day."""
        day_start = START + timedelta(days=day)
        honest[:] = [tx for tx in honest if tx.initiated_at < day_start]
        sender = self.phone()
        mules = [self.phone() for _ in range(self.random.randint(1, 3))]
        times = sorted(self.moment(day, 8, 20) for _ in range(self.random.randint(4, 8)))
        transactions = [SyntheticTransaction(device.local_id(), "p2p",
                                             self.xof(float(LIMIT) * self.random.uniform(0.9, 0.995)), sender,
                                             self.random.choice(mules), moment, STRUCTURING) for moment in times]
        self.pend(device, transactions)
        return day_start

    def double_spending(self, day: int, index: int) -> None:
        """Inject a double spend: one wallet pays on three colluding new phones within ten minutes."""
        sender = self.phone()
        start = self.moment(day, 8, 21)
        for copy in range(3):
            device = self.make_device(f"SYN_DS_{index:03d}_{copy}", "agent",
                                      registered_at=start - timedelta(hours=self.random.uniform(6, 60)))
            transactions = []
            for _ in range(self.random.randint(1, 3)):
                moment = start + timedelta(seconds=self.random.uniform(0, 600))
                amount = self.xof(self.random.uniform(10_000, 60_000))
                transactions.append(SyntheticTransaction(device.local_id(), "p2p", amount, sender, self.phone(),
                                                         moment, DOUBLE_SPENDING))
            transactions.sort(key=lambda tx: tx.initiated_at)
            self.pend(device, transactions)

    def replay(self, device: SyntheticDevice, day: int, honest: list[SyntheticTransaction]) -> datetime | None:
        """Inject a replay: copies of the device's honest payments of the past day under new local ids."""
        sealed_at = self.moment(day, 8, 20)
        recent = [tx for tx in honest if sealed_at - timedelta(hours=24) <= tx.initiated_at < sealed_at]
        if len(recent) < 3:
            return None
        originals = sorted(self.random.sample(recent, min(len(recent), self.random.randint(3, 10))),
                           key=lambda tx: tx.initiated_at)
        copies = [SyntheticTransaction(device.local_id(), tx.type, tx.amount, tx.sender, tx.receiver,
                                       tx.initiated_at, REPLAY) for tx in originals]
        self.pend(device, copies, sealed_at=sealed_at)
        return sealed_at

    def cloned_key(self, device: SyntheticDevice, day: int) -> None:
        """Inject a cloned key: a phone with the device's copied key and counter cashes out overnight."""
        start = self.moment(day, 20, 23)
        transactions = []
        mules = [self.phone() for _ in range(self.random.randint(2, 5))]
        for _ in range(self.random.randint(4, 10)):
            moment = start + timedelta(minutes=self.random.uniform(0, 300))
            amount = self.xof(min(float(device.usual_amount) * self.random.uniform(5, 15), float(LIMIT) * 0.85))
            transactions.append(SyntheticTransaction(device.local_id(), "p2p", amount, device.wallet,
                                                     self.random.choice(mules), moment, CLONED_KEY))
        transactions.sort(key=lambda tx: tx.initiated_at)
        self.pend(device, transactions, kind="clone")

    def clock_tampering(self, device: SyntheticDevice, day: int,
                        honest: list[SyntheticTransaction]) -> datetime | None:
        """Inject clock tampering: the clock is set back 2 to 24 hours to fit more payments into an earlier day."""
        sealed_at = self.moment(day, 10, 22)
        before = [tx for tx in honest if tx.initiated_at < sealed_at]
        if not before:
            return None
        latest = before[-1].initiated_at
        start = latest - timedelta(hours=self.random.uniform(2, 24))
        transactions = []
        for step in range(self.random.randint(5, 15)):
            moment = start + timedelta(minutes=3 * step)
            amount = self.xof(float(device.usual_amount) * self.random.uniform(1, 3))
            transactions.append(SyntheticTransaction(device.local_id(), "p2p", amount,
                                                     self.random.choice(device.customers), self.phone(), moment,
                                                     CLOCK_TAMPERING))
        self.pend(device, transactions, sealed_at=sealed_at)
        return sealed_at

    # Assembly -----------------------------------------------------------------------------

    def number_bundles(self, device: SyntheticDevice) -> list[SyntheticBundle]:
        """Give sequence numbers in sealing order, and arrival times in that order too.

        A device pushes its outbox in order. A clone's bundles continue from the counter it
        copied, so their numbers repeat numbers that the device already used.
        """
        bundles = []
        sealed_times = []
        sequence = 0
        clone_sequence = None
        last_arrival = None
        for sealed_at, transactions, kind in sorted(device.pending, key=lambda item: item[0]):
            if kind == "clone":
                if clone_sequence is None:
                    copied_at = sealed_at - timedelta(days=self.random.uniform(1, 3))
                    clone_sequence = bisect.bisect_left(sealed_times, copied_at)
                clone_sequence += 1
                number = clone_sequence
                arrives_at = sealed_at + timedelta(minutes=self.random.uniform(1, 30))
            else:
                sequence += 1
                number = sequence
                sealed_times.append(sealed_at)
                arrives_at = sealed_at + timedelta(minutes=self.random.uniform(1, 120))
                if last_arrival is not None:
                    arrives_at = max(arrives_at, last_arrival + timedelta(seconds=1))
                last_arrival = arrives_at
            bundles.append(SyntheticBundle(bundle_id=f"bundle_{device.device_id.lower()}_{number:06d}_{kind}",
                                           device_id=device.device_id, sequence=number, sealed_at=sealed_at,
                                           arrives_at=arrives_at, transactions=transactions))
        return bundles

    def generate(self) -> Traffic:
        mix = self.mix
        honest_by_device: dict[str, list[SyntheticTransaction]] = {}
        for index in range(mix.merchants + mix.agents):
            tenant_type = "merchant" if index < mix.merchants else "agent"
            registered_at = None
            if self.random.random() < 0.05:
                registered_at = START + timedelta(days=self.random.uniform(0, mix.days - 1))  # a new honest device
            device = self.make_device(f"SYN_{tenant_type[0].upper()}{index:04d}", tenant_type,
                                      registered_at=registered_at)
            honest_by_device[device.device_id] = self.honest_days(device, mix.days)

        # Each incident takes a device that no other incident uses, so the patterns stay apart.
        unused = list(honest_by_device)
        self.random.shuffle(unused)
        boundaries: dict[str, list[datetime]] = {}
        for pattern, count in mix.incidents.items():
            for index in range(count):
                day = self.random.randint(1, mix.days - 1)
                if pattern == DOUBLE_SPENDING:
                    self.double_spending(day, index)
                    continue
                if pattern == STRUCTURING:
                    device = self.make_device(f"SYN_ST_{index:03d}", "agent")
                    honest_by_device[device.device_id] = self.honest_days(device, mix.days)
                elif unused:
                    device = self.devices[unused.pop()]
                else:
                    continue
                honest = honest_by_device[device.device_id]
                boundary = None
                if pattern == BURST:
                    boundary = self.burst(device, day, honest)
                elif pattern == STRUCTURING:
                    boundary = self.structuring(device, day, honest)
                elif pattern == REPLAY:
                    boundary = self.replay(device, day, honest)
                elif pattern == CLONED_KEY:
                    self.cloned_key(device, day)
                elif pattern == CLOCK_TAMPERING:
                    boundary = self.clock_tampering(device, day, honest)
                if boundary is not None:
                    boundaries.setdefault(device.device_id, []).append(boundary)

        for device_id, honest in honest_by_device.items():
            self.seal_honest(self.devices[device_id], honest, boundaries.get(device_id, []))

        bundles = []
        for device in self.devices.values():
            bundles.extend(self.number_bundles(device))
        bundles.sort(key=lambda bundle: (bundle.arrives_at, bundle.bundle_id))
        return Traffic(devices=self.devices, bundles=bundles)

    def honest_days(self, device: SyntheticDevice, days: int) -> list[SyntheticTransaction]:
        transactions = []
        for day in range(days):
            transactions.extend(self.honest_day(device, day))
        return transactions


def generate_traffic(seed: int = 7, mix: TrafficMix | None = None) -> Traffic:
    """Generate labelled traffic for a seed and a mix."""
    return Generator(seed, mix).generate()
