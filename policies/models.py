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
        permissions = [
            # Granted per Policy row with django-guardian: the row stands for its country.
            ("review_country", _("Can see and act on the devices and bundles of this country")),
        ]

    def __str__(self):
        return f"{self.country} ({self.currency})"

    @property
    def effective_max_clock_skew_minutes(self) -> int:
        if self.max_clock_skew_minutes is not None:
            return self.max_clock_skew_minutes
        return settings.OFFLINE["MAX_CLOCK_SKEW_MINUTES"]


# Limits whose increase loosens a policy and so needs a second approver. A lower value
# tightens the policy and applies at once. The fraud score thresholds loosen when raised too.
FOUR_EYES_LIMIT_FIELDS = [
    "max_offline_per_device_per_day", "max_amount_per_device_per_day", "max_amount_per_transaction",
    "max_bundle_age_hours", "max_clock_skew_minutes", "sira_review_threshold", "sira_quarantine_threshold",
    "four_eyes_amount_threshold",
]


class ChangeKind(models.TextChoices):
    POLICY_LIMIT = "policy_limit", _("Raise a policy limit")
    BUNDLE_RELEASE = "bundle_release", _("Release a quarantined bundle above the four-eyes amount")


class ChangeStatus(models.TextChoices):
    PENDING = "pending", _("Pending second approval")
    APPROVED = "approved", _("Approved and applied")
    REJECTED = "rejected", _("Rejected")


class ChangeRequest(models.Model):
    """A change that one user requested and a second authorised user must approve (four eyes)."""

    kind = models.CharField(_("kind"), max_length=32, choices=ChangeKind.choices)
    status = models.CharField(_("status"), max_length=16, choices=ChangeStatus.choices,
                              default=ChangeStatus.PENDING, db_default=ChangeStatus.PENDING, db_index=True)
    country = models.CharField(_("country"), max_length=2, db_index=True)
    policy = models.ForeignKey(Policy, verbose_name=_("policy"), null=True, blank=True, on_delete=models.PROTECT,
                               related_name="change_requests")
    bundle = models.ForeignKey("bundles.Bundle", to_field="bundle_id", db_column="bundle_id", null=True, blank=True,
                               on_delete=models.PROTECT, related_name="change_requests", verbose_name=_("bundle"))
    # Policy fields as they were when the request was made, and as requested. Approval
    # refuses to apply the change if the policy moved in between.
    old_values = models.JSONField(_("old values"), default=dict, blank=True, db_default={})
    new_values = models.JSONField(_("new values"), default=dict, blank=True, db_default={})
    request_note = models.TextField(_("request note"))
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, verbose_name=_("requested by"),
                                     on_delete=models.PROTECT, related_name="+")
    requested_at = models.DateTimeField(_("requested at"), auto_now_add=True, db_default=Now())
    decided_by = models.ForeignKey(settings.AUTH_USER_MODEL, verbose_name=_("decided by"), null=True, blank=True,
                                   on_delete=models.PROTECT, related_name="+")
    decided_at = models.DateTimeField(_("decided at"), null=True, blank=True)
    decision_note = models.TextField(_("decision note"), blank=True, default="", db_default="")

    class Meta:
        db_table = "offline_change_requests"
        verbose_name = _("change request (four eyes)")
        verbose_name_plural = _("change requests (four eyes)")
        ordering = ["-requested_at"]
        constraints = [
            # One pending release per bundle, so two reviewers cannot queue the same release twice.
            models.UniqueConstraint(fields=["bundle"], condition=models.Q(status="pending", kind="bundle_release"),
                                    name="change_request_one_pending_release"),
        ]

    def __str__(self):
        return f"{self.get_kind_display()} {self.country} #{self.pk}"
