import pgtrigger
from django.conf import settings
from django.db import models
from django.db.models.functions import Now
from django.utils.translation import gettext_lazy as _


class AuditAction(models.TextChoices):
    DEVICE_REGISTERED = "device_registered", _("Device registered")
    DEVICE_BLOCKED = "device_blocked", _("Device blocked")
    DEVICE_REACTIVATED = "device_reactivated", _("Device reactivated")
    DEVICE_DEACTIVATED = "device_deactivated", _("Device deactivated")
    DEVICE_KEY_REPLACED = "device_key_replaced", _("Device key replaced")
    BUNDLE_RECEIVED = "bundle_received", _("Bundle received")
    BUNDLE_REPUSHED = "bundle_repushed", _("Bundle pushed again")
    BUNDLE_CONFLICT = "bundle_conflict", _("Bundle ID reused with other content")
    BUNDLE_ACCEPTED = "bundle_accepted", _("Bundle accepted")
    BUNDLE_REJECTED = "bundle_rejected", _("Bundle rejected")
    BUNDLE_QUARANTINED = "bundle_quarantined", _("Bundle quarantined")
    BUNDLE_PENDING_REVIEW = "bundle_pending_review", _("Bundle sent to review")
    MANUAL_APPROVAL = "manual_approval", _("Bundle approved by operator")
    MANUAL_REJECTION = "manual_rejection", _("Bundle rejected by operator")
    BUNDLE_REQUEUED = "bundle_requeued", _("Bundle requeued")
    SEQUENCE_GAP = "sequence_gap", _("Sequence gap detected")
    SEQUENCE_CONFLICT = "sequence_conflict", _("Sequence conflict detected")
    QUEUE_ENQUEUED = "queue_enqueued", _("Queued for reconciliation")
    RECONCILED = "reconciled", _("Reconciled")
    RECONCILIATION_EXCEPTION = "reconciliation_exception", _("Reconciliation exception")
    QUEUE_DEAD_LETTERED = "queue_dead_lettered", _("Queue row dead-lettered")
    OPENING_BALANCE_SET = "opening_balance_set", _("Ledger opening balance set")
    POLICY_CHANGED = "policy_changed", _("Policy changed")
    CHANGE_REQUESTED = "change_requested", _("Change requested (four eyes)")
    CHANGE_APPROVED = "change_approved", _("Change approved (four eyes)")
    CHANGE_REJECTED = "change_rejected", _("Change rejected (four eyes)")
    ALERT_RAISED = "alert_raised", _("Alert raised")
    ALERT_RESOLVED = "alert_resolved", _("Alert resolved")


@pgtrigger.register(
    # Append-only: PostgreSQL itself rejects an UPDATE or DELETE of an audit row, from any database role.
    pgtrigger.Protect(name="append_only_update", operation=pgtrigger.Update),
    pgtrigger.Protect(name="append_only_delete", operation=pgtrigger.Delete),
)
class AuditLog(models.Model):
    """One recorded change: who did what to which bundle or device, and why."""

    bundle_id = models.CharField(_("bundle ID"), max_length=64, null=True, blank=True, db_index=True)
    device_id = models.CharField(_("device ID"), max_length=64, null=True, blank=True, db_index=True)
    actor = models.CharField(_("actor"), max_length=254, db_default="system",
                             help_text=_("User email or name, 'system', or 'device:<device_id>'."))
    # No constraint and no cascade: deleting a user must not touch audit rows, which
    # PostgreSQL refuses to update anyway. `actor` keeps the name.
    actor_user = models.ForeignKey(settings.AUTH_USER_MODEL, verbose_name=_("actor user"), null=True, blank=True,
                                   on_delete=models.DO_NOTHING, related_name="+", db_constraint=False)
    action = models.CharField(_("action"), max_length=64, db_index=True)
    details = models.JSONField(_("details"), default=dict, blank=True, db_default={})
    old_values = models.JSONField(_("old values"), default=dict, blank=True, db_default={})
    new_values = models.JSONField(_("new values"), default=dict, blank=True, db_default={})
    reason = models.TextField(_("reason"), blank=True, default="", db_default="")
    ip_address = models.GenericIPAddressField(_("IP address"), null=True, blank=True)
    country = models.CharField(_("country"), max_length=2, blank=True, default="", db_default="", db_index=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True, db_default=Now(), db_index=True)

    class Meta:
        db_table = "offline_audit_logs"
        verbose_name = _("audit log entry")
        verbose_name_plural = _("audit log")
        ordering = ["-created_at", "-id"]
        permissions = [("export_auditlog", _("Can export the audit log as CSV"))]
        indexes = [models.Index(fields=["actor", "created_at"], name="audit_actor_created")]

    def __str__(self):
        return f"{self.created_at:%Y-%m-%d %H:%M} {self.actor} {self.action}"

    def get_action_display(self) -> str:
        try:
            return AuditAction(self.action).label
        except ValueError:
            return self.action
