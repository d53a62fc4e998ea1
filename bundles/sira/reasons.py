"""Reason codes of a fraud score, stored in `Transaction.sira_reasons`.

Each stored reason is {"code": <SiraReason value>, "points": <int>, "detail": <English text>}.
Screens show the translated label of the code next to the English detail.
"""

from django.db import models
from django.utils.translation import gettext_lazy as _


class SiraReason(models.TextChoices):
    VELOCITY = "velocity", _("Many transactions within minutes on the device")
    AMOUNT_ABOVE_USUAL = "amount_above_usual", _("Amount far above the device's usual amounts")
    NEW_DEVICE = "new_device", _("New device or newly registered key")
    MANY_RECEIVERS = "many_receivers", _("Many distinct receivers within an hour")
    NEAR_LIMIT = "near_limit", _("Amount just under the per-transaction limit")
    STRUCTURING = "structuring", _("Repeated amounts just under the limit")
    NIGHT_HOURS = "night_hours", _("Night hours in the country's time zone")
    SENDER_ON_OTHER_DEVICES = "sender_on_other_devices", _("Sender seen on other devices within minutes")
    REPLAYED_TRANSACTION = "replayed_transaction", _("Copy of an earlier transaction")
    SEQUENCE_GAP = "sequence_gap", _("Bundle sequence numbers missing before this bundle")
    KEY_CONFLICT = "key_conflict", _("Another bundle of the device has the same sequence number")
    CLOCK_ROLLBACK = "clock_rollback", _("Device clock went back")
    INITIATED_AFTER_SEALING = "initiated_after_sealing", _("Transaction time after the bundle was sealed")
    EXTERNAL = "external", _("Reason given by the external fraud scorer")


def reason(code: SiraReason, points: int, detail: str) -> dict:
    """Build one stored reason."""
    return {"code": str(code), "points": points, "detail": detail}


def plain_amount(amount) -> str:
    """Format an amount without trailing zeros or an exponent: Decimal("1500.00") -> "1500"."""
    return f"{amount.normalize():f}"


def reason_label(code: str) -> str:
    """Return the translated label of a stored reason code, or the code itself if it is unknown."""
    try:
        return SiraReason(code).label
    except ValueError:
        return code


def describe_reasons(reasons: list[dict]) -> list[dict]:
    """Add the translated label to each stored reason, for screens: {"code", "label", "points", "detail"}."""
    return [{"code": item.get("code", ""), "label": reason_label(item.get("code", "")),
             "points": item.get("points", 0), "detail": item.get("detail", "")} for item in reasons]
