"""Per-device daily totals in offline_device_activity.

The totals count the transactions of every bundle that counts against the daily limits:
accepted bundles and those waiting in pending_review or quarantined. Rejecting such a
bundle releases its transactions from the totals. Callers hold the device's row lock
(SELECT ... FOR UPDATE on offline_devices), so two bundles of one device never update
the same day at once.
"""

from collections import defaultdict
from datetime import date
from decimal import Decimal
from zoneinfo import ZoneInfo

from django.db.models import F

from .models import DeviceActivity


def totals_by_local_day(transactions, time_zone: str) -> dict[date, tuple[int, Decimal]]:
    """Group transactions by the local day of `initiated_at` in `time_zone`: {day: (count, amount)}."""
    zone = ZoneInfo(time_zone)
    totals: dict[date, list] = defaultdict(lambda: [0, Decimal(0)])
    for tx in transactions:
        day = tx.initiated_at.astimezone(zone).date()
        totals[day][0] += 1
        totals[day][1] += tx.amount
    return {day: (count, amount) for day, (count, amount) in totals.items()}


def current_totals(device_id: str, days) -> dict[date, tuple[int, Decimal]]:
    rows = DeviceActivity.objects.filter(device_id=device_id, activity_date__in=list(days))
    return {row.activity_date: (row.tx_count, row.total_amount) for row in rows}


def add_activity(device_id: str, totals: dict[date, tuple[int, Decimal]], *, sign: int = 1) -> None:
    """Add (sign=1) or release (sign=-1) daily totals for a device."""
    for day, (count, amount) in totals.items():
        row, created = DeviceActivity.objects.get_or_create(
            device_id=device_id, activity_date=day,
            defaults={"tx_count": max(count * sign, 0), "total_amount": max(amount * sign, Decimal(0))})
        if not created:
            DeviceActivity.objects.filter(pk=row.pk).update(tx_count=F("tx_count") + sign * count,
                                                            total_amount=F("total_amount") + sign * amount)


def release_bundle_activity(bundle, transactions, time_zone: str) -> None:
    """Give back the daily totals that a bundle in review held, when it is rejected."""
    counted = [tx for tx in transactions if not tx.failed_check]
    add_activity(bundle.device_id, totals_by_local_day(counted, time_zone), sign=-1)
