from django.db import models
from django.db.models import Q
from django.db.models.functions import Now
from django.utils.translation import gettext_lazy as _


class QueueStatus(models.TextChoices):
    PENDING = "pending", _("Pending")
    PROCESSING = "processing", _("Processing")
    DONE = "done", _("Done")
    FAILED = "failed", _("Failed, will retry")
    DEAD = "dead", _("Dead-lettered")


# Priority 1 is served first; the runbook queues manual approvals with priority 1.
DEFAULT_PRIORITY = 5
MANUAL_PRIORITY = 1


class SyncQueueItem(models.Model):
    """An accepted bundle waiting to be posted to the ledger."""

    bundle = models.ForeignKey("bundles.Bundle", to_field="bundle_id", db_column="bundle_id",
                               on_delete=models.PROTECT, related_name="queue_items", verbose_name=_("bundle"))
    priority = models.SmallIntegerField(_("priority"), default=DEFAULT_PRIORITY, db_default=DEFAULT_PRIORITY)
    status = models.CharField(_("status"), max_length=16, choices=QueueStatus.choices,
                              default=QueueStatus.PENDING, db_default=QueueStatus.PENDING)
    attempts = models.IntegerField(_("attempts"), default=0, db_default=0)
    last_error = models.TextField(_("last error"), blank=True, default="", db_default="")
    locked_by = models.CharField(_("locked by"), max_length=128, blank=True, default="", db_default="")
    lease_expires_at = models.DateTimeField(_("lease expires at"), null=True, blank=True)
    outcome = models.JSONField(_("outcome"), default=dict, blank=True, db_default={})
    created_at = models.DateTimeField(_("created at"), auto_now_add=True, db_default=Now(), db_index=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True, db_default=Now())
    processed_at = models.DateTimeField(_("processed at"), null=True, blank=True)

    class Meta:
        db_table = "offline_sync_queue"
        verbose_name = _("sync queue item")
        verbose_name_plural = _("sync queue")
        ordering = ["priority", "created_at"]
        constraints = [
            # One live row per bundle: a second approval cannot queue the bundle twice.
            models.UniqueConstraint(fields=["bundle"], condition=Q(status__in=["pending", "processing", "failed"]),
                                    name="sync_queue_one_live_row_per_bundle"),
        ]
        indexes = [
            models.Index(fields=["priority", "created_at"], condition=Q(status__in=["pending", "failed"]),
                         name="sync_queue_claimable"),
        ]

    def __str__(self):
        return f"{self.bundle_id} ({self.status})"


class WorkerHeartbeat(models.Model):
    """When each reconciliation worker last ran and last succeeded; the dashboard alerts on stale rows."""

    worker_name = models.CharField(_("worker"), max_length=128, unique=True)
    hostname = models.CharField(_("host name"), max_length=255, blank=True, default="")
    pid = models.IntegerField(_("process ID"), null=True, blank=True)
    last_run_at = models.DateTimeField(_("last run at"), null=True, blank=True)
    last_success_at = models.DateTimeField(_("last success at"), null=True, blank=True)
    last_error = models.TextField(_("last error"), blank=True, default="", db_default="")
    updated_at = models.DateTimeField(_("updated at"), auto_now=True, db_default=Now())

    class Meta:
        db_table = "offline_worker_heartbeats"
        verbose_name = _("worker heartbeat")
        verbose_name_plural = _("worker heartbeats")
        ordering = ["worker_name"]

    def __str__(self):
        return self.worker_name
