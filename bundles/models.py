from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.db.models.functions import Now
from django.utils.translation import gettext_lazy as _


class BundleStatus(models.TextChoices):
    RECEIVED = "received", _("Received, awaiting validation")
    ACCEPTED = "accepted", _("Accepted")
    REJECTED = "rejected", _("Rejected")
    QUARANTINED = "quarantined", _("Quarantined")
    PENDING_REVIEW = "pending_review", _("Pending review")


# Statuses that an operator must act on.
REVIEW_STATUSES = (BundleStatus.QUARANTINED, BundleStatus.PENDING_REVIEW)


class ReconciliationStatus(models.TextChoices):
    NOT_QUEUED = "not_queued", _("Not queued")
    QUEUED = "queued", _("Queued")
    POSTED = "posted", _("Posted")
    PARTIAL = "partial", _("Posted with exceptions")
    FAILED = "failed", _("Failed")


class Bundle(models.Model):
    """A signed batch of offline transactions as pushed by one device.

    `created_at` is when the server first received the bundle, which the runbook's
    queries rely on; the device's own clock values are in `device_created_at` and
    `device_sent_at`.
    """

    bundle_id = models.CharField(_("bundle ID"), max_length=64, unique=True)
    # No foreign key constraint: a bundle from an unknown device is stored as rejected.
    device = models.ForeignKey("devices.Device", to_field="device_id", db_column="device_id", db_constraint=False,
                               null=True, on_delete=models.DO_NOTHING, related_name="bundles",
                               verbose_name=_("device"))
    country = models.CharField(_("country"), max_length=2, blank=True, default="", db_index=True,
                               help_text=_("Country of the device when the bundle arrived; empty if unknown."))
    sequence = models.BigIntegerField(_("sequence"))
    status = models.CharField(_("status"), max_length=16, choices=BundleStatus.choices,
                              default=BundleStatus.RECEIVED, db_default=BundleStatus.RECEIVED, db_index=True)
    reason_code = models.CharField(_("reason code"), max_length=64, blank=True, default="", db_default="",
                                   db_index=True)
    rejected_reason = models.TextField(_("reason"), null=True, blank=True)
    push_attempts = models.IntegerField(_("push attempts"), default=1, db_default=1)

    device_created_at = models.DateTimeField(_("sealed at (device clock)"))
    device_sent_at = models.DateTimeField(_("last sent at (device clock)"))
    signature_alg = models.CharField(_("signature algorithm"), max_length=16)
    signature_value = models.TextField(_("signature"))
    content_hash = models.CharField(_("content hash"), max_length=64,
                                    help_text=_("SHA-256 of the canonical bundle without sent_at and signature."))
    payload = models.JSONField(_("payload as pushed"))

    tx_count = models.IntegerField(_("transactions"), default=0)
    total_amount = models.DecimalField(_("total amount"), max_digits=20, decimal_places=2, default=0)
    currency = models.CharField(_("currency"), max_length=3, blank=True, default="")
    max_sira_score = models.SmallIntegerField(_("highest fraud score"), null=True, blank=True)

    reconciliation_status = models.CharField(
        _("reconciliation"), max_length=16, choices=ReconciliationStatus.choices,
        default=ReconciliationStatus.NOT_QUEUED, db_default=ReconciliationStatus.NOT_QUEUED)
    reconciled_at = models.DateTimeField(_("reconciled at"), null=True, blank=True)

    validation_attempts = models.IntegerField(_("validation attempts"), default=0, db_default=0)
    validated_at = models.DateTimeField(_("validated at"), null=True, blank=True)
    reviewed_by = models.ForeignKey(settings.AUTH_USER_MODEL, verbose_name=_("reviewed by"), null=True, blank=True,
                                    on_delete=models.SET_NULL, related_name="+")
    reviewed_at = models.DateTimeField(_("reviewed at"), null=True, blank=True)
    review_note = models.TextField(_("review note"), blank=True, default="", db_default="")

    created_at = models.DateTimeField(_("received at"), auto_now_add=True, db_default=Now(), db_index=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True, db_default=Now())
    last_pushed_at = models.DateTimeField(_("last pushed at"), auto_now_add=True, db_default=Now())
    source_ip = models.GenericIPAddressField(_("source address"), null=True, blank=True)

    class Meta:
        db_table = "offline_tx_bundles"
        verbose_name = _("bundle")
        verbose_name_plural = _("bundles")
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["device", "sequence"], name="bundle_device_sequence"),
            models.Index(fields=["status", "created_at"], name="bundle_status_created"),
        ]
        permissions = [
            ("review_bundle", _("Can approve and reject bundles")),
            ("requeue_bundle", _("Can requeue bundles")),
        ]

    def __str__(self):
        return self.bundle_id

    @property
    def needs_review(self) -> bool:
        return self.status in REVIEW_STATUSES


class TransactionStatus(models.TextChoices):
    PENDING = "pending", _("Pending validation")
    ACCEPTED = "accepted", _("Accepted")
    REJECTED = "rejected", _("Rejected")
    DUPLICATE = "duplicate", _("Duplicate")
    POSTED = "posted", _("Posted to ledger")
    FAILED = "failed", _("Ledger posting failed")


class Transaction(models.Model):
    """One offline payment inside a bundle."""

    bundle = models.ForeignKey(Bundle, to_field="bundle_id", db_column="bundle_id", on_delete=models.CASCADE,
                               related_name="transactions", verbose_name=_("bundle"))
    # The device's string ID, copied from the bundle, so that (device_id, local_id) lookups need no join.
    device_id = models.CharField(_("device ID"), max_length=64)
    position = models.IntegerField(_("position in bundle"))
    local_id = models.CharField(_("local ID"), max_length=64)
    type = models.CharField(_("type"), max_length=32)
    amount = models.DecimalField(_("amount"), max_digits=20, decimal_places=2)
    currency = models.CharField(_("currency"), max_length=3)
    sender = models.CharField(_("sender"), max_length=64)
    receiver = models.CharField(_("receiver"), max_length=64)
    initiated_at = models.DateTimeField(_("initiated at"))
    note = models.CharField(_("note"), max_length=140, blank=True, default="", db_default="")

    status = models.CharField(_("status"), max_length=16, choices=TransactionStatus.choices,
                              default=TransactionStatus.PENDING, db_default=TransactionStatus.PENDING)
    failed_check = models.CharField(_("failed check"), max_length=64, blank=True, default="", db_default="")
    failure_reason = models.TextField(_("failure reason"), blank=True, default="", db_default="")
    sira_score = models.SmallIntegerField(_("fraud score"), null=True, blank=True)
    sira_reasons = models.JSONField(_("fraud score reasons"), default=list, blank=True, db_default=[])
    posted_at = models.DateTimeField(_("posted at"), null=True, blank=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True, db_default=Now())

    class Meta:
        db_table = "offline_transactions"
        verbose_name = _("transaction")
        verbose_name_plural = _("transactions")
        ordering = ["bundle_id", "position"]
        constraints = [
            models.UniqueConstraint(fields=["bundle", "position"], name="transaction_position_in_bundle"),
        ]
        indexes = [
            models.Index(fields=["device_id", "local_id"], name="transaction_device_local_id"),
            models.Index(fields=["sender", "initiated_at"], name="transaction_sender_time"),
            # The fraud scorer reads a device's recent transactions.
            models.Index(fields=["device_id", "initiated_at"], name="transaction_device_time"),
            # The admin searches transactions by exact receiver and local ID.
            models.Index(fields=["receiver", "initiated_at"], name="transaction_receiver_time"),
            models.Index(fields=["local_id"], name="transaction_local_id"),
        ]

    def __str__(self):
        return f"{self.device_id}/{self.local_id}"


class SequenceAnomalyKind(models.TextChoices):
    GAP = "gap", _("Missing sequence number")
    CONFLICT = "conflict", _("Two bundles with one sequence number")


class SequenceAnomaly(models.Model):
    """A sequence number that never arrived, or that two different bundles claim."""

    device = models.ForeignKey("devices.Device", to_field="device_id", db_column="device_id",
                               on_delete=models.PROTECT, related_name="sequence_anomalies",
                               verbose_name=_("device"))
    kind = models.CharField(_("kind"), max_length=16, choices=SequenceAnomalyKind.choices)
    sequence = models.BigIntegerField(_("sequence"))
    bundle_ids = ArrayField(models.CharField(max_length=64), verbose_name=_("bundle IDs"), default=list)
    detected_at = models.DateTimeField(_("detected at"), auto_now_add=True, db_default=Now())
    resolved_at = models.DateTimeField(_("resolved at"), null=True, blank=True)

    class Meta:
        db_table = "offline_sequence_anomalies"
        verbose_name = _("sequence anomaly")
        verbose_name_plural = _("sequence anomalies")
        ordering = ["-detected_at"]
        constraints = [
            models.UniqueConstraint(fields=["device", "kind", "sequence"], name="sequence_anomaly_once"),
        ]

    def __str__(self):
        return f"{self.device_id} #{self.sequence} {self.kind}"
