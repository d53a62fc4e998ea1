"""Operator actions on bundles: approve, accept a too-old bundle, reject, requeue.

The admin, the tests and the four-eyes approval call these functions. Each one locks the
device row and then the bundle row, the lock order used across the code base, so that
two actions on one device cannot deadlock. Each then checks the current status, changes it with a
compare-and-set update and writes its audit row in the same transaction. Slow follow-up
work runs in transaction.on_commit.
"""

import logging
from dataclasses import dataclass

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext as _

from audit.models import AuditAction
from audit.services import record
from devices.activity import add_activity, release_bundle_activity, totals_by_local_day
from devices.keys import InvalidPublicKey, load_public_key, verify_signature
from devices.models import Device, DeviceStatus
from molam_offline.actions import ActionRefused, NotFound, required_note
from policies.models import ChangeKind, ChangeRequest, Policy
from policies.scoping import holds_country, require_permission
from reconciliation.models import MANUAL_PRIORITY
from reconciliation.services import enqueue_bundle

from .models import REVIEW_STATUSES, Bundle, BundleStatus, ReconciliationStatus, Transaction, TransactionStatus
from .reasons import ReasonCode, reason_text
from .wire import canonical_bytes

logger = logging.getLogger(__name__)

REVIEW_PERMISSION = "bundles.review_bundle"
REQUEUE_PERMISSION = "bundles.requeue_bundle"

# Reason codes an operator may give when rejecting a bundle. `other` needs a note.
MANUAL_REJECTION_CODES = [ReasonCode.CONFIRMED_FRAUD, ReasonCode.SUSPECTED_CLOCK_TAMPERING,
                          ReasonCode.EXCEEDED_MAX_AGE_POLICY, ReasonCode.OTHER]

# Statuses in which a bundle counts against the device's daily totals.
PLACE_HOLDING_STATUSES = (BundleStatus.ACCEPTED, BundleStatus.PENDING_REVIEW, BundleStatus.QUARANTINED)


@dataclass
class ApprovalOutcome:
    """The approved bundle, or the four-eyes request created in place of the approval."""

    bundle: Bundle
    change_request: ChangeRequest | None = None

    @property
    def approved(self) -> bool:
        return self.change_request is None


def approve_bundle(*, acting_user, bundle_pk: int, note: str, ip_address: str | None = None) -> ApprovalOutcome:
    """Accept a quarantined or pending-review bundle and queue it for the ledger with priority 1.

    Releasing a quarantined bundle whose total is above the policy's four-eyes amount
    creates a pending ChangeRequest instead, which a second reviewer must approve.
    """
    note = required_note(note)
    require_permission(acting_user, REVIEW_PERMISSION)

    with transaction.atomic():
        device, bundle = lock_device_and_bundle(bundle_pk, acting_user)
        if bundle.status not in REVIEW_STATUSES:
            raise ActionRefused(describe_decided(bundle))
        _refuse_unvalidated_or_blocked(bundle, device)

        policy = Policy.objects.filter(country=bundle.country).first()
        if (bundle.status == BundleStatus.QUARANTINED and policy is not None
                and bundle.total_amount > policy.four_eyes_amount_threshold):
            change_request = _request_release(bundle, policy, acting_user, note, ip_address)
            return ApprovalOutcome(bundle=bundle, change_request=change_request)

        _accept(bundle, acting_user=acting_user, note=note, ip_address=ip_address, policy=policy)
    return ApprovalOutcome(bundle=bundle)


def accept_too_old_bundle(*, acting_user, bundle_pk: int, note: str,
                          ip_address: str | None = None) -> ApprovalOutcome:
    """Accept a bundle that validation rejected as too old, after an operator checked it.

    Its transactions that failed only the age check are accepted, added to the device's
    daily totals and queued for the ledger with priority 1.
    """
    note = required_note(note)
    require_permission(acting_user, REVIEW_PERMISSION)

    with transaction.atomic():
        device, bundle = lock_device_and_bundle(bundle_pk, acting_user)
        if not is_system_rejection(bundle, ReasonCode.BUNDLE_TOO_OLD):
            raise ActionRefused(_("Bundle %(bundle)s was not rejected as too old by validation; %(state)s") % {
                "bundle": bundle.bundle_id, "state": describe_decided(bundle)})
        _refuse_unvalidated_or_blocked(bundle, device)

        policy = Policy.objects.filter(country=bundle.country).first()
        _accept(bundle, acting_user=acting_user, note=note, ip_address=ip_address, policy=policy,
                details={"accepted_too_old": True})
    return ApprovalOutcome(bundle=bundle)


def release_bundle(*, acting_user, change_request: ChangeRequest, ip_address: str | None = None) -> Bundle:
    """Accept a quarantined bundle whose four-eyes release a second reviewer approved.

    The caller holds the change request's row lock inside its transaction and has checked
    that `acting_user` is not the requester.
    """
    device, bundle = lock_device_and_bundle(change_request.bundle.pk, acting_user)
    if bundle.status != BundleStatus.QUARANTINED:
        raise ActionRefused(describe_decided(bundle))
    _refuse_unvalidated_or_blocked(bundle, device)

    policy = Policy.objects.filter(country=bundle.country).first()
    _accept(bundle, acting_user=acting_user, note=change_request.request_note, ip_address=ip_address,
            policy=policy, details={"four_eyes": {"change_request": change_request.pk,
                                                  "requested_by": change_request.requested_by.get_username()}})
    return bundle


def reject_bundle(*, acting_user, bundle_pk: int, reason_code: str, note: str = "",
                  ip_address: str | None = None) -> Bundle:
    """Reject a bundle in review, or give a bundle that validation rejected an operator's reason.

    `reason_code` is one of MANUAL_REJECTION_CODES; `other` needs a note. A bundle that
    held a place in the device's daily totals gives it back.
    """
    if reason_code not in MANUAL_REJECTION_CODES:
        raise ActionRefused(_("Invalid reason code %(code)s: use one of %(codes)s.") % {
            "code": reason_code, "codes": ", ".join(MANUAL_REJECTION_CODES)})
    note = (note or "").strip()
    if reason_code == ReasonCode.OTHER and not note:
        raise ActionRefused(_("A note is required with the reason code 'other'."))
    require_permission(acting_user, REVIEW_PERMISSION)

    with transaction.atomic():
        device, bundle = lock_device_and_bundle(bundle_pk, acting_user)
        old_status = bundle.status
        if old_status not in REVIEW_STATUSES and not is_system_rejection(bundle):
            raise ActionRefused(describe_decided(bundle))

        old_values = {"status": old_status, "reason_code": bundle.reason_code,
                      "rejected_reason": bundle.rejected_reason}
        rejected_reason = reason_text(reason_code, note or "rejected by operator")
        changed = Bundle.objects.filter(pk=bundle.pk, status=old_status, reviewed_at__isnull=True).update(
            status=BundleStatus.REJECTED, reason_code=reason_code, rejected_reason=rejected_reason,
            reviewed_by=acting_user, reviewed_at=timezone.now(), review_note=note, updated_at=timezone.now())
        if changed != 1:
            raise ActionRefused(describe_decided(bundle))

        if old_status in PLACE_HOLDING_STATUSES:
            transactions = list(bundle.transactions.all())
            _release_activity(bundle, transactions)
            bundle.transactions.filter(status__in=[TransactionStatus.PENDING, TransactionStatus.ACCEPTED]).update(
                status=TransactionStatus.REJECTED)

        record(AuditAction.MANUAL_REJECTION, acting_user=acting_user, bundle_id=bundle.bundle_id,
               device_id=bundle.device_id, country=bundle.country, reason=rejected_reason, ip_address=ip_address,
               details={"reason": rejected_reason, "reason_code": reason_code, "note": note},
               old_values=old_values,
               new_values={"status": BundleStatus.REJECTED, "reason_code": reason_code,
                           "rejected_reason": rejected_reason})
        bundle.refresh_from_db()

    logger.info("Bundle %s (device %s) rejected by %s: %s", bundle.bundle_id, bundle.device_id, acting_user,
                reason_code)
    return bundle


def requeue_bundle(*, acting_user, bundle_pk: int, note: str, ip_address: str | None = None) -> Bundle:
    """Send a bundle back through validation, for example after its device key was replaced.

    The device must exist, be active and verify the stored signature with its current
    key, because validation does not repeat those ingest checks. Bundles that an operator
    decided, accepted bundles and bundles already on the sync queue are refused.
    """
    note = required_note(note)
    require_permission(acting_user, REQUEUE_PERMISSION)

    with transaction.atomic():
        device, bundle = lock_device_and_bundle(bundle_pk, acting_user)
        old_status = bundle.status
        requeueable = old_status in (BundleStatus.RECEIVED, *REVIEW_STATUSES) or is_system_rejection(bundle)
        if not requeueable or bundle.reconciliation_status != ReconciliationStatus.NOT_QUEUED:
            raise ActionRefused(describe_decided(bundle))
        _refuse_failing_ingest_checks(bundle, device)

        old_values = {"status": old_status, "reason_code": bundle.reason_code,
                      "rejected_reason": bundle.rejected_reason}
        if old_status in PLACE_HOLDING_STATUSES:
            # Validation adds the totals again when it keeps the bundle.
            _release_activity(bundle, list(bundle.transactions.all()))

        changed = Bundle.objects.filter(pk=bundle.pk, status=old_status).update(
            status=BundleStatus.RECEIVED, reason_code="", rejected_reason=None, max_sira_score=None,
            updated_at=timezone.now())
        if changed != 1:
            raise ActionRefused(describe_decided(bundle))
        bundle.transactions.update(status=TransactionStatus.PENDING, failed_check="", failure_reason="",
                                   sira_score=None, sira_reasons=[])

        record(AuditAction.BUNDLE_REQUEUED, acting_user=acting_user, bundle_id=bundle.bundle_id,
               device_id=bundle.device_id, country=bundle.country, reason=note, ip_address=ip_address,
               details={"reason": note}, old_values=old_values, new_values={"status": BundleStatus.RECEIVED})

        from .tasks import enqueue_validation

        transaction.on_commit(lambda: enqueue_validation(bundle.pk))
        bundle.refresh_from_db()

    logger.info("Bundle %s (device %s) requeued for validation by %s", bundle.bundle_id, bundle.device_id,
                acting_user)
    return bundle


def lock_device_and_bundle(bundle_pk: int, acting_user) -> tuple[Device | None, Bundle]:
    """Lock the bundle's device row, then the bundle row; raise NotFound outside the user's countries."""
    device_id = Bundle.objects.filter(pk=bundle_pk).values_list("device_id", flat=True).first()
    device = None
    if device_id is not None:
        device = Device.objects.select_for_update().filter(device_id=device_id).first()

    bundle = Bundle.objects.select_for_update().filter(pk=bundle_pk).first()
    if bundle is None or not holds_country(acting_user, bundle.country):
        raise NotFound(_("Bundle %(pk)s not found.") % {"pk": bundle_pk})
    return device, bundle


def is_system_rejection(bundle: Bundle, reason_code: str | None = None) -> bool:
    """Return whether validation or ingest rejected the bundle and no operator has decided it since."""
    if bundle.status != BundleStatus.REJECTED or bundle.reviewed_at is not None:
        return False
    return reason_code is None or bundle.reason_code == reason_code


def describe_decided(bundle: Bundle) -> str:
    """Explain why a bundle cannot take the action: its status, and who decided it when an operator did."""
    if bundle.reviewed_at is None:
        return _("Bundle %(bundle)s is %(status)s; nothing was changed.") % {
            "bundle": bundle.bundle_id, "status": bundle.get_status_display()}
    reviewer = bundle.reviewed_by.get_username() if bundle.reviewed_by else _("a deleted user")
    return _("Bundle %(bundle)s was already %(status)s by %(user)s at %(time)s; nothing was changed.") % {
        "bundle": bundle.bundle_id, "status": bundle.get_status_display().lower(), "user": reviewer,
        "time": timezone.localtime(bundle.reviewed_at).strftime("%Y-%m-%d %H:%M")}


def _refuse_unvalidated_or_blocked(bundle: Bundle, device: Device | None) -> None:
    if bundle.validated_at is None:
        # Quarantined by a device block before validation ran: its duplicates and limits
        # were never checked, so it goes back through validation rather than to the ledger.
        raise ActionRefused(_("Bundle %(bundle)s was never validated; requeue it for validation instead.") % {
            "bundle": bundle.bundle_id})
    if device is None or device.status == DeviceStatus.BLOCKED:
        raise ActionRefused(_("Device %(device)s of bundle %(bundle)s is blocked or unknown; reactivate it "
                              "before approving.") % {"device": bundle.device_id, "bundle": bundle.bundle_id})


def _refuse_failing_ingest_checks(bundle: Bundle, device: Device | None) -> None:
    if device is None:
        raise ActionRefused(_("Device %(device)s is not registered; register it before requeueing bundle "
                              "%(bundle)s.") % {"device": bundle.device_id, "bundle": bundle.bundle_id})
    if device.status != DeviceStatus.ACTIVE:
        raise ActionRefused(_("Device %(device)s is %(status)s; reactivate it before requeueing bundle "
                              "%(bundle)s.") % {"device": device.device_id, "status": device.get_status_display(),
                                                "bundle": bundle.bundle_id})
    try:
        public_key = load_public_key(device.pubkey_pem)
    except InvalidPublicKey:
        public_key = None
    signed = canonical_bytes(bundle.payload) if isinstance(bundle.payload, dict) else b""
    if public_key is None or not verify_signature(public_key, bundle.signature_alg, bundle.signature_value, signed):
        raise ActionRefused(_("The signature of bundle %(bundle)s does not verify with the current key of device "
                              "%(device)s; replace the key first.") % {"bundle": bundle.bundle_id,
                                                                        "device": device.device_id})


def _accept(bundle: Bundle, *, acting_user, note: str, ip_address: str | None, policy: Policy | None,
            details: dict | None = None) -> None:
    """Move a locked bundle to accepted with its transactions, queue it with priority 1, and audit."""
    old_status = bundle.status
    old_values = {"status": old_status, "reason_code": bundle.reason_code, "rejected_reason": bundle.rejected_reason}
    now = timezone.now()

    changed = Bundle.objects.filter(pk=bundle.pk, status=old_status).update(
        status=BundleStatus.ACCEPTED, reason_code="", rejected_reason=None, reviewed_by=acting_user,
        reviewed_at=now, review_note=note, reconciliation_status=ReconciliationStatus.QUEUED, updated_at=now)
    if changed != 1:
        raise ActionRefused(describe_decided(bundle))

    # A bundle in review has pending transactions. A too-old one has transactions rejected
    # for the bundle's reason, which are accepted; those failing another check stay rejected.
    if old_status == BundleStatus.REJECTED:
        acceptable = bundle.transactions.filter(Q(failed_check="") | Q(failed_check=bundle.reason_code),
                                                status=TransactionStatus.REJECTED)
    else:
        acceptable = bundle.transactions.filter(status=TransactionStatus.PENDING)
    if old_status == BundleStatus.REJECTED:
        if policy is None:
            raise ActionRefused(_("No policy for country %(country)s, so the daily totals of bundle %(bundle)s "
                                  "cannot be counted.") % {"country": bundle.country, "bundle": bundle.bundle_id})
        # TODO: the daily limits are not checked again here; the operator decides with the
        # device's activity on the review page.
        add_activity(bundle.device_id, totals_by_local_day(list(acceptable), policy.timezone))
    accepted_count = acceptable.update(status=TransactionStatus.ACCEPTED, failed_check="", failure_reason="")

    bundle.refresh_from_db()
    enqueue_bundle(bundle, priority=MANUAL_PRIORITY, acting_user=acting_user)
    record(AuditAction.MANUAL_APPROVAL, acting_user=acting_user, bundle_id=bundle.bundle_id,
           device_id=bundle.device_id, country=bundle.country, reason=note, ip_address=ip_address,
           details={"reason": note, "accepted_transactions": accepted_count, **(details or {})},
           old_values=old_values,
           new_values={"status": BundleStatus.ACCEPTED, "queue_priority": MANUAL_PRIORITY})
    transaction.on_commit(lambda: logger.info("Bundle %s (device %s) approved by %s and queued with priority %d",
                                              bundle.bundle_id, bundle.device_id, acting_user, MANUAL_PRIORITY))


def _request_release(bundle: Bundle, policy: Policy, acting_user, note: str,
                     ip_address: str | None) -> ChangeRequest:
    try:
        with transaction.atomic():
            change_request = ChangeRequest.objects.create(
                kind=ChangeKind.BUNDLE_RELEASE, country=bundle.country, policy=policy, bundle=bundle,
                old_values={"status": bundle.status},
                new_values={"status": BundleStatus.ACCEPTED, "total_amount": str(bundle.total_amount)},
                request_note=note, requested_by=acting_user)
    except IntegrityError:
        pending = ChangeRequest.objects.filter(bundle=bundle, status="pending").select_related("requested_by").first()
        requester = pending.requested_by.get_username() if pending else _("another user")
        raise ActionRefused(_("The release of bundle %(bundle)s already waits for a second approval (requested "
                              "by %(user)s).") % {"bundle": bundle.bundle_id, "user": requester}) from None

    record(AuditAction.CHANGE_REQUESTED, acting_user=acting_user, bundle_id=bundle.bundle_id,
           device_id=bundle.device_id, country=bundle.country, reason=note, ip_address=ip_address,
           details={"change_request": change_request.pk, "kind": ChangeKind.BUNDLE_RELEASE,
                    "total_amount": str(bundle.total_amount),
                    "four_eyes_amount_threshold": str(policy.four_eyes_amount_threshold)},
           old_values={"status": bundle.status}, new_values={"status": BundleStatus.ACCEPTED})
    logger.info("Release of bundle %s (device %s, total %s) requested by %s; waits for a second approver",
                bundle.bundle_id, bundle.device_id, bundle.total_amount, acting_user)
    return change_request


def _release_activity(bundle: Bundle, transactions: list[Transaction]) -> None:
    policy = Policy.objects.filter(country=bundle.country).first()
    if policy is None or not bundle.device_id:
        logger.error("Daily totals of bundle %s (device %s) not released: no policy for country %r",
                     bundle.bundle_id, bundle.device_id, bundle.country)
        return
    release_bundle_activity(bundle, transactions, policy.timezone)

