from django.conf import settings
from django.db import models
from django.db.models.functions import Now
from django.utils.translation import gettext_lazy as _


class DeviceStatus(models.TextChoices):
    ACTIVE = "active", _("Active")
    INACTIVE = "inactive", _("Inactive")
    BLOCKED = "blocked", _("Blocked")


class TenantType(models.TextChoices):
    MERCHANT = "merchant", _("Merchant")
    AGENT = "agent", _("Agent")


class KeyAlgorithm(models.TextChoices):
    ED25519 = "Ed25519", "Ed25519"
    ES256 = "ES256", _("ES256 (ECDSA P-256, SHA-256)")


class Device(models.Model):
    """A merchant terminal or agent phone with the public key that signs its bundles."""

    device_id = models.CharField(_("device ID"), max_length=64, unique=True)
    tenant_type = models.CharField(_("tenant type"), max_length=16, choices=TenantType.choices)
    tenant_id = models.CharField(_("tenant ID"), max_length=64)
    country = models.CharField(_("country"), max_length=2, db_index=True)
    pubkey_pem = models.TextField(_("public key (PEM)"))
    key_alg = models.CharField(_("key algorithm"), max_length=16, choices=KeyAlgorithm.choices)
    key_fingerprint = models.CharField(_("key fingerprint"), max_length=64, blank=True,
                                       help_text=_("SHA-256 of the DER public key, in hex."))
    key_registered_at = models.DateTimeField(_("key registered at"), db_default=Now())
    status = models.CharField(_("status"), max_length=16, choices=DeviceStatus.choices,
                              default=DeviceStatus.ACTIVE, db_default=DeviceStatus.ACTIVE, db_index=True)
    status_reason = models.TextField(_("status reason"), blank=True, default="", db_default="")

    # Sequence tracking: the highest number seen, how many numbers below it never arrived,
    # and when two different bundles with one number (a cloned key) were last seen.
    max_sequence_seen = models.BigIntegerField(_("highest sequence seen"), default=0, db_default=0)
    missing_sequence_count = models.IntegerField(_("missing sequence numbers"), default=0, db_default=0)
    key_conflict_detected_at = models.DateTimeField(_("key conflict detected at"), null=True, blank=True)

    registered_by = models.ForeignKey(settings.AUTH_USER_MODEL, verbose_name=_("registered by"), null=True,
                                      blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(_("created at"), auto_now_add=True, db_default=Now())
    last_seen_at = models.DateTimeField(_("last seen at"), null=True, blank=True)

    class Meta:
        db_table = "offline_devices"
        verbose_name = _("device")
        verbose_name_plural = _("devices")
        ordering = ["device_id"]
        permissions = [
            ("block_device", _("Can block and reactivate devices")),
            ("replace_device_key", _("Can replace a device's public key")),
        ]

    def __str__(self):
        return self.device_id

    @property
    def is_active(self) -> bool:
        return self.status == DeviceStatus.ACTIVE


class DeviceActivity(models.Model):
    """Accepted transactions per device per local day of the device's country."""

    device = models.ForeignKey(Device, to_field="device_id", db_column="device_id", on_delete=models.PROTECT,
                               related_name="activity", verbose_name=_("device"))
    activity_date = models.DateField(_("activity date"))
    total_amount = models.DecimalField(_("total amount"), max_digits=20, decimal_places=2, default=0, db_default=0)
    tx_count = models.IntegerField(_("transaction count"), default=0, db_default=0)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True, db_default=Now())

    class Meta:
        db_table = "offline_device_activity"
        verbose_name = _("device activity")
        verbose_name_plural = _("device activity")
        ordering = ["-activity_date"]
        constraints = [
            models.UniqueConstraint(fields=["device", "activity_date"], name="device_activity_one_row_per_day"),
        ]

    def __str__(self):
        return f"{self.device_id} {self.activity_date}"
