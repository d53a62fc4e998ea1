from decimal import Decimal

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.db.models.functions import Now
from django.utils.translation import gettext_lazy as _

TRANSACTION_TYPES = ["p2p", "merchant_payment", "cash_in", "cash_out", "bill_payment"]


def default_transaction_types() -> list[str]:
    return list(TRANSACTION_TYPES)


class Policy(models.Model):
    """Offline limits and fraud thresholds of one country."""

    country = models.CharField(_("country"), max_length=2, unique=True)
    currency = models.CharField(_("currency"), max_length=3)
    timezone = models.CharField(_("time zone"), max_length=64, default="Africa/Dakar",
                                help_text=_("IANA time zone that defines a device's day for the daily limits."))
    max_offline_per_device_per_day = models.IntegerField(
        _("max transactions per device per day"), default=50, db_default=50)
    max_amount_per_device_per_day = models.DecimalField(
        _("max amount per device per day"), max_digits=20, decimal_places=2, default=Decimal("500000"))
    max_amount_per_transaction = models.DecimalField(
        _("max amount per transaction"), max_digits=20, decimal_places=2, default=Decimal("100000"))
    max_bundle_age_hours = models.IntegerField(_("max bundle age (hours)"), default=72, db_default=72)
    max_clock_skew_minutes = models.IntegerField(
        _("max clock skew (minutes)"), null=True, blank=True,
        help_text=_("Empty means the MAX_CLOCK_SKEW_MINUTES setting."))
    allowed_tx_types = ArrayField(models.CharField(max_length=32), verbose_name=_("allowed transaction types"),
                                  default=default_transaction_types)
    sira_review_threshold = models.IntegerField(
        _("fraud score for review"), default=60, db_default=60,
        help_text=_("A bundle with a transaction at or above this score goes to pending review."))
    sira_quarantine_threshold = models.IntegerField(
        _("fraud score for quarantine"), default=80, db_default=80,
        help_text=_("A bundle with a transaction at or above this score is quarantined."))
    four_eyes_amount_threshold = models.DecimalField(
        _("four-eyes release amount"), max_digits=20, decimal_places=2, default=Decimal("1000000"),
        help_text=_("Releasing a quarantined bundle above this total needs a second approver."))
    is_active = models.BooleanField(_("active"), default=True, db_default=True)
    updated_by = models.ForeignKey(settings.AUTH_USER_MODEL, verbose_name=_("updated by"), null=True, blank=True,
                                   on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(_("created at"), auto_now_add=True, db_default=Now())
    updated_at = models.DateTimeField(_("updated at"), auto_now=True, db_default=Now())

    class Meta:
        db_table = "offline_policies"
        verbose_name = _("policy")
        verbose_name_plural = _("policies")
        ordering = ["country"]

    def __str__(self):
        return f"{self.country} ({self.currency})"

    @property
    def effective_max_clock_skew_minutes(self) -> int:
        if self.max_clock_skew_minutes is not None:
            return self.max_clock_skew_minutes
        return settings.OFFLINE["MAX_CLOCK_SKEW_MINUTES"]
