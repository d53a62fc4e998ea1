"""Operator actions on devices: block (one or many), reactivate, deactivate, replace the public key.

Each action locks the device row first (before any of its bundles, the lock order used
everywhere), checks the current status, changes it with a compare-and-set update and
writes its audit row in the same transaction.
"""

import logging
import re
from dataclasses import dataclass, field

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from audit.models import AuditAction
from audit.services import last_actor, record
from molam_offline.actions import ActionRefused, BulkResult, NotFound, required_note
from policies.scoping import holds_country, require_permission

from .activity import add_activity, totals_by_local_day
from .keys import InvalidPublicKey, load_public_key
from .models import Device, DeviceStatus
from .services import DeviceStatusUnchanged, set_device_status

logger = logging.getLogger(__name__)

STATUS_PERMISSION = "devices.block_device"
KEY_PERMISSION = "devices.replace_device_key"

# Largest list of device IDs that one bulk block takes; each device is its own transaction.
MAX_BULK_DEVICES = 1000


@dataclass
class BulkBlockResult(BulkResult):
    quarantined_bundle_ids: list[str] = field(default_factory=list)


@dataclass
class BlockOutcome:
    device: Device
    quarantined_bundle_ids: list[str] = field(default_factory=list)


def block_device(*, acting_user, device_id: str, reason: str, quarantine_bundles: bool = False,
                 ip_address: str | None = None) -> BlockOutcome:
    """Block a device so that its pushes are rejected; optionally quarantine its waiting bundles.

    With `quarantine_bundles`, its bundles still `received` or `pending_review` move to
    `quarantined` in the same transaction, so no operator or worker approves them meanwhile.
    """
    reason = required_note(reason, "reason")
    require_permission(acting_user, STATUS_PERMISSION)

    with transaction.atomic():
        device = _lock_device(device_id, acting_user)
        if device.status == DeviceStatus.BLOCKED:
            raise ActionRefused(_already_in_status(device, AuditAction.DEVICE_BLOCKED))
        device = _set_status(device, DeviceStatus.BLOCKED, AuditAction.DEVICE_BLOCKED, acting_user, reason,
                             ip_address)
        quarantined = _quarantine_waiting_bundles(device, acting_user, reason, ip_address) if quarantine_bundles else []

    logger.info("Device %s blocked by %s; %d bundles quarantined", device_id, acting_user, len(quarantined))
    return BlockOutcome(device=device, quarantined_bundle_ids=quarantined)


def block_devices(*, acting_user, device_ids: list[str], reason: str, quarantine_bundles: bool = False,
                  ip_address: str | None = None) -> BulkBlockResult:
    """Block many devices with one reason; each device commits on its own and skips are reported.

    A device outside the acting user's countries is reported as not found.
    """
    reason = required_note(reason, "reason")
    require_permission(acting_user, STATUS_PERMISSION)
    if len(device_ids) > MAX_BULK_DEVICES:
        raise ActionRefused(_("At most %(max)d devices can be blocked at once; %(count)d were given.") % {
            "max": MAX_BULK_DEVICES, "count": len(device_ids)})

    result = BulkBlockResult()
    for device_id in dict.fromkeys(device_ids):
        try:
            outcome = block_device(acting_user=acting_user, device_id=device_id, reason=reason,
                                   quarantine_bundles=quarantine_bundles, ip_address=ip_address)
        except ActionRefused as refusal:
            result.skipped[device_id] = refusal.message
            continue
        result.changed.append(device_id)
        result.quarantined_bundle_ids.extend(outcome.quarantined_bundle_ids)

    logger.info("Bulk block by %s: %d devices blocked, %d skipped", acting_user, len(result.changed),
                len(result.skipped))
    return result


def reactivate_device(*, acting_user, device_id: str, reason: str, ip_address: str | None = None) -> Device:
    """Return a blocked or inactive device to active, so that its pushes are accepted again."""
    reason = required_note(reason, "reason")
    require_permission(acting_user, STATUS_PERMISSION)

    with transaction.atomic():
        device = _lock_device(device_id, acting_user)
        if device.status == DeviceStatus.ACTIVE:
            raise ActionRefused(_already_in_status(device, AuditAction.DEVICE_REACTIVATED))
        return _set_status(device, DeviceStatus.ACTIVE, AuditAction.DEVICE_REACTIVATED, acting_user, reason,
                           ip_address)


def deactivate_device(*, acting_user, device_id: str, reason: str, ip_address: str | None = None) -> Device:
    """Take an active device out of service (for example a returned terminal); its pushes are rejected."""
    reason = required_note(reason, "reason")
    require_permission(acting_user, STATUS_PERMISSION)

    with transaction.atomic():
        device = _lock_device(device_id, acting_user)
        if device.status != DeviceStatus.ACTIVE:
            raise ActionRefused(_already_in_status(device, AuditAction.DEVICE_DEACTIVATED))
        return _set_status(device, DeviceStatus.INACTIVE, AuditAction.DEVICE_DEACTIVATED, acting_user, reason,
                           ip_address)


def replace_device_key(*, acting_user, device_id: str, pubkey_pem: str, reason: str,
                       ip_address: str | None = None) -> Device:
    """Register a new public key for a device that regenerated its keys.

    The audit row stores the old and new algorithms and fingerprints, never the key
    itself. Bundles rejected for their signature can then be requeued.
    """
    reason = required_note(reason, "reason")
    require_permission(acting_user, KEY_PERMISSION)
    try:
        public_key = load_public_key(pubkey_pem)
    except InvalidPublicKey as error:
        raise ActionRefused(_("Invalid public key: %(error)s.") % {"error": error}) from None

    with transaction.atomic():
        device = _lock_device(device_id, acting_user)
        if device.key_fingerprint == public_key.fingerprint:
            raise ActionRefused(_("Device %(device)s already has this key (fingerprint %(fingerprint)s).") % {
                "device": device_id, "fingerprint": public_key.fingerprint})

        old_values = {"key_alg": device.key_alg, "key_fingerprint": device.key_fingerprint}
        now = timezone.now()
        changed = Device.objects.filter(pk=device.pk, key_fingerprint=device.key_fingerprint).update(
            pubkey_pem=pubkey_pem.strip() + "\n", key_alg=public_key.algorithm,
            key_fingerprint=public_key.fingerprint, key_registered_at=now)
        if changed != 1:
            raise ActionRefused(_("The key of device %(device)s changed meanwhile; reload and try again.") % {
                "device": device_id})

        record(AuditAction.DEVICE_KEY_REPLACED, acting_user=acting_user, device_id=device_id,
               country=device.country, reason=reason, ip_address=ip_address, old_values=old_values,
               new_values={"key_alg": public_key.algorithm, "key_fingerprint": public_key.fingerprint})
        device.refresh_from_db()

    logger.info("Key of device %s replaced by %s: %s -> %s", device_id, acting_user,
                old_values["key_fingerprint"][:16], public_key.fingerprint[:16])
    return device


def parse_device_ids(text: str) -> list[str]:
    """Split pasted device IDs on whitespace and commas, dropping repeats and keeping the order."""
    return list(dict.fromkeys(part for part in re.split(r"[\s,;]+", text or "") if part))


def _lock_device(device_id: str, acting_user) -> Device:
    device = Device.objects.select_for_update().filter(device_id=device_id).first()
    if device is None or not holds_country(acting_user, device.country):
        raise NotFound(_("Device %(device)s not found.") % {"device": device_id})
    return device


def _set_status(device: Device, new_status: str, action: str, acting_user, reason: str,
                ip_address: str | None) -> Device:
    try:
        return set_device_status(acting_user=acting_user, device_id=device.device_id, new_status=new_status,
                                 reason=reason, action=action, ip_address=ip_address)
    except DeviceStatusUnchanged:
        raise ActionRefused(_("Device %(device)s changed meanwhile; reload and try again.") % {
            "device": device.device_id}) from None


def _already_in_status(device: Device, action: str) -> str:
    actor = last_actor(action, device_id=device.device_id)
    if actor:
        return _("Device %(device)s is already %(status)s (last changed by %(actor)s); nothing was changed.") % {
            "device": device.device_id, "status": device.get_status_display().lower(), "actor": actor}
    return _("Device %(device)s is already %(status)s; nothing was changed.") % {
        "device": device.device_id, "status": device.get_status_display().lower()}


def _quarantine_waiting_bundles(device: Device, acting_user, reason: str, ip_address: str | None) -> list[str]:
    """Quarantine the device's received and pending-review bundles; the caller holds the device lock."""
    from bundles.models import Bundle, BundleStatus
    from bundles.reasons import ReasonCode, reason_text
    from policies.models import Policy

    waiting = list(Bundle.objects.select_for_update().filter(
        device_id=device.device_id, status__in=[BundleStatus.RECEIVED, BundleStatus.PENDING_REVIEW]).order_by("pk"))
    policy = Policy.objects.filter(country=device.country).first()
    rejected_reason = reason_text(ReasonCode.DEVICE_BLOCKED, f"device blocked by operator: {reason}")
    quarantined = []

    for bundle in waiting:
        changed = Bundle.objects.filter(pk=bundle.pk, status=bundle.status).update(
            status=BundleStatus.QUARANTINED, reason_code=ReasonCode.DEVICE_BLOCKED, rejected_reason=rejected_reason,
            updated_at=timezone.now())
        if changed != 1:
            continue
        if bundle.status == BundleStatus.RECEIVED and policy is not None:
            # A quarantined bundle counts in the daily totals, and rejecting it later subtracts
            # them again. A received bundle was not counted yet, so it is counted now.
            add_activity(device.device_id, totals_by_local_day(list(bundle.transactions.all()), policy.timezone))
        record(AuditAction.BUNDLE_QUARANTINED, acting_user=acting_user, bundle_id=bundle.bundle_id,
               device_id=device.device_id, country=bundle.country, reason=rejected_reason, ip_address=ip_address,
               old_values={"status": bundle.status},
               new_values={"status": BundleStatus.QUARANTINED, "reason_code": ReasonCode.DEVICE_BLOCKED})
        quarantined.append(bundle.bundle_id)
    return quarantined
