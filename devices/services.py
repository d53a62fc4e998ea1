"""Device registry operations."""

import logging

from django.db import IntegrityError, transaction

from audit.models import AuditAction
from audit.services import record

from .keys import load_public_key
from .models import Device

logger = logging.getLogger(__name__)


class DeviceAlreadyRegistered(Exception):
    def __init__(self, device_id: str):
        super().__init__(device_id)
        self.device_id = device_id


def register_device(*, acting_user, device_id: str, tenant_type: str, tenant_id: str, pubkey_pem: str,
                    country: str, ip_address: str | None = None) -> Device:
    """Register a device and its public key; raise DeviceAlreadyRegistered if the id is taken.

    The key must already have been checked by the caller; it is parsed again here to
    record its algorithm and fingerprint.
    """
    public_key = load_public_key(pubkey_pem)

    try:
        with transaction.atomic():
            device = Device.objects.create(
                device_id=device_id, tenant_type=tenant_type, tenant_id=tenant_id, country=country,
                pubkey_pem=pubkey_pem.strip() + "\n", key_alg=public_key.algorithm,
                key_fingerprint=public_key.fingerprint, registered_by=acting_user,
            )
            record(AuditAction.DEVICE_REGISTERED, acting_user=acting_user, device_id=device_id, country=country,
                   ip_address=ip_address,
                   new_values={"tenant_type": tenant_type, "tenant_id": tenant_id, "country": country,
                               "key_alg": public_key.algorithm, "key_fingerprint": public_key.fingerprint})
    except IntegrityError:
        logger.info("Registration of device %s rejected: already registered", device_id)
        raise DeviceAlreadyRegistered(device_id) from None

    logger.info("Device %s registered for %s %s in %s with an %s key", device_id, tenant_type, tenant_id, country,
                public_key.algorithm)
    return device


class DeviceStatusUnchanged(Exception):
    """Raised when the device already has the requested status, or another request changed it first."""


def set_device_status(*, acting_user, device_id: str, new_status: str, reason: str, action: str,
                      ip_address: str | None = None) -> Device:
    """Move a device to `new_status` with a compare-and-set update and its audit row.

    Raises Device.DoesNotExist for an unknown id and DeviceStatusUnchanged when the device
    already has `new_status` or was changed concurrently.
    """
    with transaction.atomic():
        device = Device.objects.select_for_update().get(device_id=device_id)
        old_status = device.status
        if old_status == new_status:
            raise DeviceStatusUnchanged(device_id)

        changed = Device.objects.filter(pk=device.pk, status=old_status).update(status=new_status,
                                                                                status_reason=reason)
        if changed != 1:
            raise DeviceStatusUnchanged(device_id)

        record(action, acting_user=acting_user, device_id=device_id, country=device.country, reason=reason,
               ip_address=ip_address, old_values={"status": old_status}, new_values={"status": new_status})

    logger.info("Device %s moved from %s to %s: %s", device_id, old_status, new_status, reason)
    device.status = new_status
    device.status_reason = reason
    return device
