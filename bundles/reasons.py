"""Stable reason codes for rejected, quarantined and pending-review bundles.

`rejected_reason` stores "<code>: <detail>" in English, because the runbook's diagnosis
queries search it with LIKE (for example '%clock skew%' and '%too old%'). Screens show
the translated label of the code.
"""

from django.db import models
from django.utils.translation import gettext_lazy as _


class ReasonCode(models.TextChoices):
    UNKNOWN_DEVICE = "unknown_device", _("Device not registered")
    DEVICE_INACTIVE = "device_inactive", _("Device inactive")
    DEVICE_BLOCKED = "device_blocked", _("Device blocked")
    INVALID_SIGNATURE = "invalid_signature", _("Invalid signature")
    NO_POLICY = "no_policy", _("No policy for the device's country")
    CLOCK_SKEW = "clock_skew", _("Clock skew too large")
    BUNDLE_TOO_OLD = "bundle_too_old", _("Bundle too old")
    SUSPECTED_CLOCK_TAMPERING = "suspected_clock_tampering", _("Suspected clock tampering")
    AMOUNT_OVER_LIMIT = "amount_over_limit", _("Transaction amount over the limit")
    CURRENCY_NOT_ALLOWED = "currency_not_allowed", _("Currency not allowed")
    TYPE_NOT_ALLOWED = "type_not_allowed", _("Transaction type not allowed")
    DAILY_LIMIT_EXCEEDED = "daily_limit_exceeded", _("Daily limit exceeded")
    DUPLICATE_TRANSACTION = "duplicate_transaction", _("Duplicate transaction")
    SEQUENCE_CONFLICT = "sequence_conflict", _("Sequence number used by another bundle")
    HIGH_FRAUD_SCORE = "high_fraud_score", _("High fraud score")
    SCORER_UNAVAILABLE = "scorer_unavailable", _("Fraud scorer unavailable")
    CONFIRMED_FRAUD = "confirmed_fraud", _("Confirmed fraud")
    EXCEEDED_MAX_AGE_POLICY = "exceeded_max_age_policy", _("Exceeded the maximum age policy")
    OTHER = "other", _("Other")


def reason_text(code: str, detail: str) -> str:
    """Format the stored `rejected_reason`: the code, then an English detail for the runbook's LIKE queries."""
    return f"{code}: {detail}"
