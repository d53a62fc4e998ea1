"""Database lookups that build a bundle's BundleContext: a fixed number of indexed queries per bundle.

The queries are bounded by time and row count, so a device or sender with millions of
past transactions costs the same as one with a few hundred.
"""

from django.db.models import F

from devices.models import Device

from ..models import Bundle, Transaction, TransactionStatus
from .features import (DEVICE_HISTORY_LIMIT, DEVICE_LOOKBACK, SENDER_HISTORY_LIMIT, SENDER_LOOKAHEAD, SENDER_LOOKBACK,
                       BundleContext, PastTransaction)

HISTORY_FIELDS = ("device_id", "local_id", "sender", "receiver", "amount", "initiated_at", "sequence")


def _past(rows) -> list[PastTransaction]:
    return [PastTransaction(*row) for row in rows]


def load_context(bundle: Bundle, transactions: list[Transaction], time_zone: str) -> BundleContext:
    """Read the device's and the senders' recent history for a bundle in five queries.

    Transactions of rejected bundles are left out: a forged or refused bundle must not
    shape the history that the device's real bundles are compared with.
    """
    times = [tx.initiated_at for tx in transactions]
    earliest, latest = min(times), max(times)
    senders = sorted({tx.sender for tx in transactions})

    key_registered_at = (Device.objects.filter(device_id=bundle.device_id)
                         .values_list("key_registered_at", flat=True).first())

    # Uses the (device_id, initiated_at) index; the newest rows first, so the limit keeps the recent ones.
    device_rows = (Transaction.objects
                   .filter(device_id=bundle.device_id, initiated_at__gte=earliest - DEVICE_LOOKBACK)
                   .exclude(bundle_id=bundle.bundle_id)
                   .exclude(status=TransactionStatus.REJECTED)
                   .annotate(sequence=F("bundle__sequence"))
                   .order_by("-initiated_at")
                   .values_list(*HISTORY_FIELDS)[:DEVICE_HISTORY_LIMIT])
    device_history = sorted(_past(device_rows), key=lambda past: past.initiated_at)

    # Uses the (sender, initiated_at) index.
    sender_rows = (Transaction.objects
                   .filter(sender__in=senders, initiated_at__gte=earliest - SENDER_LOOKBACK,
                           initiated_at__lte=latest + SENDER_LOOKAHEAD)
                   .exclude(device_id=bundle.device_id)
                   .exclude(status=TransactionStatus.REJECTED)
                   .annotate(sequence=F("bundle__sequence"))
                   .order_by("-initiated_at")
                   .values_list(*HISTORY_FIELDS)[:SENDER_HISTORY_LIMIT])
    sender_history = _past(sender_rows)

    # Both use the (device, sequence) index of the bundles.
    other_bundles = Bundle.objects.filter(device_id=bundle.device_id).exclude(pk=bundle.pk)
    previous_sequence = (other_bundles.filter(sequence__lt=bundle.sequence).order_by("-sequence")
                         .values_list("sequence", flat=True).first())
    sequence_conflict = other_bundles.filter(sequence=bundle.sequence).exists()

    return BundleContext(
        bundle_id=bundle.bundle_id,
        device_id=bundle.device_id,
        sequence=bundle.sequence,
        sealed_at=bundle.device_created_at,
        key_registered_at=key_registered_at,
        time_zone=time_zone,
        previous_sequence=previous_sequence,
        sequence_conflict=sequence_conflict,
        device_history=device_history,
        sender_history=sender_history,
    )
