"""The common issues of the on-call runbook (docs/operations.md), which reason codes they cover, and the admin actions that resolve them.

The admin action names and labels are kept here and nowhere else, so the diagnosis
command, the dashboard and docs/operations.md name the same buttons.
"""

from dataclasses import dataclass

from django.apps import apps
from django.contrib import admin
from django.utils.translation import gettext_lazy as _

from bundles.models import BundleStatus
from bundles.reasons import ReasonCode


@dataclass(frozen=True)
class AdminAction:
    name: str  # the action's function name on the ModelAdmin
    model: str  # app_label.ModelName whose change list offers it
    default_label: str


ADMIN_ACTIONS = {
    "approve": AdminAction("approve", "bundles.Bundle", _("Approve")),
    "reject": AdminAction("reject", "bundles.Bundle", _("Reject")),
    "requeue": AdminAction("requeue", "bundles.Bundle", _("Requeue")),
    "block_device": AdminAction("block_device", "devices.Device", _("Block device")),
    "reactivate_device": AdminAction("reactivate_device", "devices.Device", _("Reactivate device")),
    "replace_key": AdminAction("replace_key", "devices.Device", _("Replace key")),
}


def admin_action_label(key: str) -> str:
    """Return the label the admin shows for an action, or its default label if the admin does not offer it."""
    action = ADMIN_ACTIONS[key]
    model = apps.get_model(action.model)
    if admin.site.is_registered(model):
        found = admin.site.get_model_admin(model).get_action(action.name)
        if found is not None:
            return str(found[2])
    # NOTE: the default label is used until the admin registers an action of this name.
    return str(action.default_label)


def admin_action_text(key: str) -> str:
    """Describe where an action is: "'Approve' in the admin's Bundles list"."""
    action = ADMIN_ACTIONS[key]
    model = apps.get_model(action.model)
    return _("'%(action)s' in the admin's %(model)s list") % {
        "action": admin_action_label(key), "model": model._meta.verbose_name_plural.capitalize()}


@dataclass(frozen=True)
class RunbookIssue:
    number: int
    title: str
    resolution: str
    actions: tuple[str, ...]  # keys of ADMIN_ACTIONS, in the order the runbook tries them


ISSUES = {
    1: RunbookIssue(1, _("Invalid device signature"), _(
        "If the device is not registered, register it with POST /offline/devices (pay_admin role). "
        "If it is inactive, reactivate it. If it regenerated its key, get the new public key from the "
        "merchant and replace the key."), ("reactivate_device", "replace_key")),
    2: RunbookIssue(2, _("Clock skew violation"), _(
        "Check that the device syncs its clock automatically and has the right time zone. For a legitimate "
        "remote area, raise the policy's max clock skew for a while. If tampering is suspected, reject the "
        "bundle and, in severe cases, block the device."), ("reject", "block_device")),
    3: RunbookIssue(3, _("Bundle too old"), _(
        "If the device was offline for days and its transactions are valid, approve the bundle (it is queued "
        "with priority 1). If it looks suspicious, reject it and investigate."), ("approve", "reject")),
    4: RunbookIssue(4, _("Daily limit exceeded"), _(
        "Look at the device's activity of the last 7 days. For legitimate high volume, raise the policy's "
        "daily limit (needs approval). For suspicious activity, block the device and escalate to the fraud "
        "team."), ("block_device",)),
    5: RunbookIssue(5, _("Fraud score quarantine (SIRA)"), _(
        "Review the transactions, highest fraud score first. Approve the bundle if it is legitimate; reject "
        "it as confirmed fraud and block the device if it is not."), ("approve", "reject", "block_device")),
    6: RunbookIssue(6, _("Reconciliation worker stuck"), _(
        "Check the worker's logs and pod, and long-running database queries. Restart the worker "
        "deployment; requeue bundles whose queue row is dead-lettered."), ("requeue",)),
}

REASON_ISSUES = {
    ReasonCode.INVALID_SIGNATURE: 1,
    ReasonCode.UNKNOWN_DEVICE: 1,
    ReasonCode.DEVICE_INACTIVE: 1,
    ReasonCode.DEVICE_BLOCKED: 1,
    ReasonCode.CLOCK_SKEW: 2,
    ReasonCode.SUSPECTED_CLOCK_TAMPERING: 2,
    ReasonCode.BUNDLE_TOO_OLD: 3,
    ReasonCode.EXCEEDED_MAX_AGE_POLICY: 3,
    ReasonCode.DAILY_LIMIT_EXCEEDED: 4,
    ReasonCode.HIGH_FRAUD_SCORE: 5,
    ReasonCode.CONFIRMED_FRAUD: 5,
}


def issue_for(*, status: str, reason_code: str, queue_stuck: bool = False) -> RunbookIssue | None:
    """Return the runbook issue that matches a bundle, or None if no issue covers it."""
    if queue_stuck:
        return ISSUES[6]
    if reason_code in REASON_ISSUES:
        return ISSUES[REASON_ISSUES[reason_code]]
    if status in (BundleStatus.QUARANTINED, BundleStatus.PENDING_REVIEW):
        return ISSUES[5]
    return None
