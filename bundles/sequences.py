"""Sequence tracking per device: missing bundle numbers (gaps) and numbers used twice (conflicts).

Runs during validation while the caller holds the device's row lock, which serialises
every bundle of the device, so two concurrent pushes cannot both move
`max_sequence_seen` or both claim one number. Bundles rejected at ingest are never
validated and so are not tracked here.
"""

import logging
from dataclasses import dataclass

from django.conf import settings
from django.utils import timezone

from audit.models import AuditAction
from audit.services import record
from devices.models import Device

from .models import Bundle, SequenceAnomaly, SequenceAnomalyKind
from .reasons import ReasonCode

logger = logging.getLogger(__name__)

# Bundles that did not prove they come from the device's key: they cannot claim a number.
UNSIGNED_REASONS = (ReasonCode.UNKNOWN_DEVICE, ReasonCode.INVALID_SIGNATURE)


@dataclass
class SequenceConflict:
    sequence: int
    earlier_bundle_ids: list[str]


def track_sequence(device: Device, bundle: Bundle) -> SequenceConflict | None:
    """Record gaps and conflicts for a bundle being validated; return the conflict, if any.

    Of two signed bundles with one number, the one received later (higher primary key)
    is the conflicting one, whatever order they are validated in.
    """
    earlier = list(
        Bundle.objects.filter(device_id=device.device_id, sequence=bundle.sequence, pk__lt=bundle.pk)
        .exclude(reason_code__in=UNSIGNED_REASONS)
        .order_by("pk").values_list("bundle_id", flat=True)
    )
    if earlier:
        _record_conflict(device, bundle, earlier)
        return SequenceConflict(sequence=bundle.sequence, earlier_bundle_ids=earlier)

    if bundle.sequence > device.max_sequence_seen:
        _record_gap(device, bundle)
    else:
        _resolve_gap(device, bundle)
    return None


def _record_conflict(device: Device, bundle: Bundle, earlier: list[str]) -> None:
    now = timezone.now()
    anomaly, created = SequenceAnomaly.objects.get_or_create(
        device=device, kind=SequenceAnomalyKind.CONFLICT, sequence=bundle.sequence,
        defaults={"bundle_ids": [*earlier, bundle.bundle_id]})
    if not created and bundle.bundle_id not in anomaly.bundle_ids:
        anomaly.bundle_ids = [*anomaly.bundle_ids, bundle.bundle_id]
        anomaly.save(update_fields=["bundle_ids"])

    device.key_conflict_detected_at = now
    device.save(update_fields=["key_conflict_detected_at"])

    record(AuditAction.SEQUENCE_CONFLICT, bundle_id=bundle.bundle_id, device_id=device.device_id,
           country=device.country, reason=f"sequence {bundle.sequence} is also used by {', '.join(earlier)}",
           details={"sequence": bundle.sequence, "bundle_ids": anomaly.bundle_ids},
           new_values={"key_conflict_detected_at": now.isoformat()})
    logger.warning("Sequence conflict on device %s: bundle %s reuses number %d of %s", device.device_id,
                   bundle.bundle_id, bundle.sequence, ", ".join(earlier))


def _record_gap(device: Device, bundle: Bundle) -> None:
    first_missing = device.max_sequence_seen + 1
    missing_count = bundle.sequence - first_missing
    old_values = {"max_sequence_seen": device.max_sequence_seen,
                  "missing_sequence_count": device.missing_sequence_count}

    device.max_sequence_seen = bundle.sequence
    device.missing_sequence_count += missing_count
    device.save(update_fields=["max_sequence_seen", "missing_sequence_count"])
    if missing_count == 0:
        return

    # A device reset or a corrupted counter can jump by millions of numbers. One row per
    # number would flood the table and the admin page, so only the first numbers get a
    # row. The count on the device still includes every missing number.
    row_limit = settings.OFFLINE["MAX_SEQUENCE_GAP_ROWS"]
    numbers = range(first_missing, first_missing + min(missing_count, row_limit))
    SequenceAnomaly.objects.bulk_create(
        [SequenceAnomaly(device=device, kind=SequenceAnomalyKind.GAP, sequence=number,
                         bundle_ids=[bundle.bundle_id]) for number in numbers],
        ignore_conflicts=True)

    record(AuditAction.SEQUENCE_GAP, bundle_id=bundle.bundle_id, device_id=device.device_id,
           country=device.country, reason=f"sequence numbers {first_missing} to {bundle.sequence - 1} not received",
           details={"first_missing": first_missing, "last_missing": bundle.sequence - 1,
                    "missing_count": missing_count, "gap_rows_created": len(numbers)},
           old_values=old_values,
           new_values={"max_sequence_seen": device.max_sequence_seen,
                       "missing_sequence_count": device.missing_sequence_count})
    logger.warning("Sequence gap on device %s: bundle %s has number %d, %d numbers missing from %d",
                   device.device_id, bundle.bundle_id, bundle.sequence, missing_count, first_missing)


def _resolve_gap(device: Device, bundle: Bundle) -> None:
    """Close the gap of a number below max_sequence_seen that arrives late."""
    SequenceAnomaly.objects.filter(device=device, kind=SequenceAnomalyKind.GAP, sequence=bundle.sequence,
                                   resolved_at__isnull=True).update(resolved_at=timezone.now())
    if device.missing_sequence_count > 0:
        device.missing_sequence_count -= 1
        device.save(update_fields=["missing_sequence_count"])
    logger.info("Late bundle %s fills sequence number %d of device %s", bundle.bundle_id, bundle.sequence,
                device.device_id)
