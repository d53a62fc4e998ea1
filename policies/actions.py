"""Policy changes and four-eyes approvals.

Raising a policy limit, and releasing a quarantined bundle above the policy's four-eyes
amount, create a pending ChangeRequest. A second user with the same authority approves or
rejects it; nobody decides their own request. Both steps leave audit rows.
"""

import logging
from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from audit.models import AuditAction
from audit.services import record
from molam_offline.actions import ActionRefused, NotFound, required_note

from .models import FOUR_EYES_LIMIT_FIELDS, ChangeKind, ChangeRequest, ChangeStatus, Policy
from .scoping import holds_country, require_permission

logger = logging.getLogger(__name__)

POLICY_PERMISSION = "policies.change_policy"

# Permission that a second approver needs, per kind of change.
APPROVER_PERMISSIONS = {
    ChangeKind.POLICY_LIMIT: POLICY_PERMISSION,
    ChangeKind.BUNDLE_RELEASE: "bundles.review_bundle",
}


# The country names the guardian permission rows, so it never changes; the rest is bookkeeping.
EDITABLE_FIELDS = {field.name for field in Policy._meta.fields} - {"id", "country", "updated_by", "created_at",
                                                                     "updated_at"}


@dataclass
class PolicyChangeOutcome:
    """The policy as changed, or the four-eyes request created in place of the change."""

    policy: Policy
    change_request: ChangeRequest | None = None

    @property
    def applied(self) -> bool:
        return self.change_request is None


def change_policy(*, acting_user, policy_pk: int, changes: dict, note: str,
                  ip_address: str | None = None) -> PolicyChangeOutcome:
    """Change policy fields; a change that raises a limit waits for a second approver.

    `changes` maps field names to new values. A change that only tightens the policy, or
    touches no limit, applies at once.
    """
    note = required_note(note)
    require_permission(acting_user, POLICY_PERMISSION)
    unknown = sorted(set(changes) - EDITABLE_FIELDS)
    if unknown:
        raise ActionRefused(_("These policy fields cannot be changed: %(fields)s.") % {"fields": ", ".join(unknown)})

    with transaction.atomic():
        policy = _lock_policy(policy_pk, acting_user)
        old_values = {name: json_value(getattr(policy, name)) for name in changes}
        new_values = {name: json_value(value) for name, value in changes.items()}
        changed = {name for name in changes if old_values[name] != new_values[name]}
        if not changed:
            raise ActionRefused(_("No policy field changed."))
        old_values = {name: old_values[name] for name in sorted(changed)}
        new_values = {name: new_values[name] for name in sorted(changed)}

        raised = [name for name in changed if name in FOUR_EYES_LIMIT_FIELDS
                  and _limit_value(name, changes[name]) > _limit_value(name, getattr(policy, name))]
        if raised:
            change_request = ChangeRequest.objects.create(
                kind=ChangeKind.POLICY_LIMIT, country=policy.country, policy=policy, old_values=old_values,
                new_values=new_values, request_note=note, requested_by=acting_user)
            record(AuditAction.CHANGE_REQUESTED, acting_user=acting_user, country=policy.country, reason=note,
                   ip_address=ip_address, old_values=old_values, new_values=new_values,
                   details={"change_request": change_request.pk, "kind": ChangeKind.POLICY_LIMIT,
                            "raised": sorted(raised)})
            logger.info("Policy %s change requested by %s (raises %s); waits for a second approver",
                        policy.country, acting_user, ", ".join(sorted(raised)))
            return PolicyChangeOutcome(policy=policy, change_request=change_request)

        _apply_policy_values(policy, {name: changes[name] for name in changed}, acting_user)
        record(AuditAction.POLICY_CHANGED, acting_user=acting_user, country=policy.country, reason=note,
               ip_address=ip_address, old_values=old_values, new_values=new_values)

    logger.info("Policy %s changed by %s: %s", policy.country, acting_user, ", ".join(sorted(changed)))
    return PolicyChangeOutcome(policy=policy)


def approve_change_request(*, acting_user, change_request_pk: int, note: str = "",
                           ip_address: str | None = None) -> ChangeRequest:
    """Apply a pending change as its second approver; the requester cannot approve it."""
    with transaction.atomic():
        change_request = _lock_pending_request(change_request_pk, acting_user)
        if change_request.kind == ChangeKind.POLICY_LIMIT:
            _apply_requested_policy_change(change_request, acting_user, ip_address)
        else:
            from bundles.actions import release_bundle

            release_bundle(acting_user=acting_user, change_request=change_request, ip_address=ip_address)

        _decide(change_request, ChangeStatus.APPROVED, acting_user, note, ip_address)

    logger.info("Change request %s (%s, %s) approved by %s", change_request.pk, change_request.kind,
                change_request.country, acting_user)
    return change_request


def reject_change_request(*, acting_user, change_request_pk: int, note: str,
                          ip_address: str | None = None) -> ChangeRequest:
    """Reject a pending change; nothing it requested is applied."""
    note = required_note(note)
    with transaction.atomic():
        change_request = _lock_pending_request(change_request_pk, acting_user)
        _decide(change_request, ChangeStatus.REJECTED, acting_user, note, ip_address)

    logger.info("Change request %s (%s, %s) rejected by %s", change_request.pk, change_request.kind,
                change_request.country, acting_user)
    return change_request


def _lock_policy(policy_pk: int, acting_user) -> Policy:
    policy = Policy.objects.select_for_update().filter(pk=policy_pk).first()
    if policy is None or not holds_country(acting_user, policy.country):
        raise NotFound(_("Policy %(pk)s not found.") % {"pk": policy_pk})
    return policy


def _lock_pending_request(change_request_pk: int, acting_user) -> ChangeRequest:
    """Lock what the request changes (device and bundle, or policy), then the request; check who decides."""
    change_request = ChangeRequest.objects.filter(pk=change_request_pk).first()
    if change_request is None or not holds_country(acting_user, change_request.country):
        raise NotFound(_("Change request %(pk)s not found.") % {"pk": change_request_pk})
    require_permission(acting_user, APPROVER_PERMISSIONS[change_request.kind])

    # Same lock order as the actions that apply the change: device, bundle, then this row.
    if change_request.kind == ChangeKind.BUNDLE_RELEASE:
        from bundles.actions import lock_device_and_bundle

        lock_device_and_bundle(change_request.bundle.pk, acting_user)
    elif change_request.policy_id is not None:
        _lock_policy(change_request.policy_id, acting_user)

    change_request = ChangeRequest.objects.select_for_update(of=("self",)).select_related(
        "requested_by", "decided_by").get(
        pk=change_request_pk)
    if change_request.status != ChangeStatus.PENDING:
        decider = change_request.decided_by.get_username() if change_request.decided_by else _("a deleted user")
        raise ActionRefused(_("Change request %(pk)s was already %(status)s by %(user)s; nothing was changed.") % {
            "pk": change_request.pk, "status": change_request.get_status_display().lower(), "user": decider})
    if acting_user is not None and change_request.requested_by_id == acting_user.pk:
        raise ActionRefused(_("You requested change %(pk)s yourself; another authorised user must approve or "
                              "reject it.") % {"pk": change_request.pk})
    return change_request


def _decide(change_request: ChangeRequest, status: str, acting_user, note: str, ip_address: str | None) -> None:
    """Store the decision on a pending change request with a compare-and-set update, and its audit row."""
    now = timezone.now()
    changed = ChangeRequest.objects.filter(pk=change_request.pk, status=ChangeStatus.PENDING).update(
        status=status, decided_by=acting_user, decided_at=now, decision_note=note)
    if changed != 1:
        raise ActionRefused(_("Change request %(pk)s was decided meanwhile; nothing was changed.") % {
            "pk": change_request.pk})
    change_request.status, change_request.decided_by, change_request.decided_at = status, acting_user, now
    change_request.decision_note = note

    action = AuditAction.CHANGE_APPROVED if status == ChangeStatus.APPROVED else AuditAction.CHANGE_REJECTED
    record(action, acting_user=acting_user, country=change_request.country, bundle_id=change_request.bundle_id,
           reason=note, ip_address=ip_address, old_values=change_request.old_values,
           new_values=change_request.new_values,
           details={"change_request": change_request.pk, "kind": change_request.kind,
                    "requested_by": change_request.requested_by.get_username()})


def _apply_requested_policy_change(change_request: ChangeRequest, acting_user, ip_address: str | None) -> None:
    policy = Policy.objects.select_for_update().get(pk=change_request.policy_id)
    current = {name: json_value(getattr(policy, name)) for name in change_request.old_values}
    if current != change_request.old_values:
        raise ActionRefused(_("Policy %(country)s changed since the request was made; reject this request and "
                              "ask for a new one.") % {"country": policy.country})

    values = {name: Policy._meta.get_field(name).to_python(value) for name, value in change_request.new_values.items()}
    _apply_policy_values(policy, values, acting_user)
    record(AuditAction.POLICY_CHANGED, acting_user=acting_user, country=policy.country,
           reason=change_request.request_note, ip_address=ip_address, old_values=change_request.old_values,
           new_values=change_request.new_values,
           details={"change_request": change_request.pk, "requested_by": change_request.requested_by.get_username()})


def _apply_policy_values(policy: Policy, values: dict, acting_user) -> None:
    for name, value in values.items():
        setattr(policy, name, value)
    policy.updated_by = acting_user
    policy.full_clean(exclude=["updated_by"])
    policy.save(update_fields=[*values, "updated_by", "updated_at"])


def _limit_value(name: str, value) -> Decimal:
    """Compare limits as numbers; an empty clock skew means the MAX_CLOCK_SKEW_MINUTES setting."""
    if value is None and name == "max_clock_skew_minutes":
        value = settings.OFFLINE["MAX_CLOCK_SKEW_MINUTES"]
    return Decimal(str(value))


def json_value(value):
    """Return a policy field value in the form stored in audit rows and change requests."""
    if isinstance(value, Decimal):
        # "500000" rather than "500000.00" or "5E+5", so equal amounts compare equal as JSON.
        return str(value.quantize(Decimal(1))) if value == value.to_integral_value() else format(value.normalize(), "f")
    return value
