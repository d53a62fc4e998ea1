import pgtrigger
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
    # A failed row is not claimed again before this time; NULL (the database default) means now.
    available_at = models.DateTimeField(_("next attempt at"), null=True, blank=True)
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


class DeadLetterManager(models.Manager):
    def get_queryset(self):
        return super().get_queryset().filter(status=QueueStatus.DEAD)


class DeadLetter(SyncQueueItem):
    """A queue row that ran out of attempts or cannot be posted; an operator must look at it and requeue it."""

    objects = DeadLetterManager()

    class Meta:
        proxy = True
        verbose_name = _("dead letter")
        verbose_name_plural = _("dead letters")


@pgtrigger.register(
    # An account with history must never disappear, so PostgreSQL rejects every DELETE of one.
    pgtrigger.Protect(name="ledger_account_no_delete", operation=pgtrigger.Delete),
)
class LedgerAccount(models.Model):
    """A wallet in one currency, keyed by the sender or receiver identifier of the offline payments.

    `balance` is stored, not derived, so that posting can check funds under a row lock. It is
    written only in the database transaction that inserts the journal entries that change it,
    and always equals `opening_balance` plus credits minus debits (checked by
    `reconciliation.ledger.check_ledger`). The check constraint rejects a negative balance
    even where code does not check funds.
    """

    identifier = models.CharField(_("identifier"), max_length=64)
    currency = models.CharField(_("currency"), max_length=3)
    opening_balance = models.DecimalField(_("opening balance"), max_digits=20, decimal_places=2, default=0,
                                          db_default=0)
    balance = models.DecimalField(_("balance"), max_digits=20, decimal_places=2, default=0, db_default=0)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True, db_default=Now())
    updated_at = models.DateTimeField(_("updated at"), auto_now=True, db_default=Now())

    class Meta:
        db_table = "offline_ledger_accounts"
        verbose_name = _("ledger account")
        verbose_name_plural = _("ledger accounts")
        ordering = ["identifier", "currency"]
        constraints = [
            models.UniqueConstraint(fields=["identifier", "currency"], name="ledger_account_identifier_currency"),
            models.CheckConstraint(condition=Q(balance__gte=0), name="ledger_account_no_overdraft"),
            models.CheckConstraint(condition=Q(opening_balance__gte=0), name="ledger_account_opening_not_negative"),
        ]

    def __str__(self):
        return f"{self.identifier} {self.currency}"


@pgtrigger.register(
    # Append-only, so a correction has to be a new entry.
    # TODO: no reversal entry or tool exists yet; a wrong posting needs a hand-written entry.
    pgtrigger.Protect(name="ledger_entry_append_only_update", operation=pgtrigger.Update),
    pgtrigger.Protect(name="ledger_entry_append_only_delete", operation=pgtrigger.Delete),
)
class JournalEntry(models.Model):
    """One posting: `amount` moves from the debit account to the credit account, in one currency.

    Each row is both sides of a double entry, so debits and credits cannot drift apart.
    The unique constraint on (device_id, local_id) is the final guard against posting an
    offline payment twice, whatever status the transaction table shows.
    """

    device_id = models.CharField(_("device ID"), max_length=64)
    local_id = models.CharField(_("local ID"), max_length=64)
    transaction = models.OneToOneField("bundles.Transaction", on_delete=models.PROTECT, related_name="journal_entry",
                                       verbose_name=_("transaction"))
    bundle_id = models.CharField(_("bundle ID"), max_length=64, db_index=True)
    debit_account = models.ForeignKey(LedgerAccount, on_delete=models.PROTECT, related_name="debits",
                                      verbose_name=_("debit account (sender)"))
    credit_account = models.ForeignKey(LedgerAccount, on_delete=models.PROTECT, related_name="credits",
                                       verbose_name=_("credit account (receiver)"))
    amount = models.DecimalField(_("amount"), max_digits=20, decimal_places=2)
    currency = models.CharField(_("currency"), max_length=3)
    posted_at = models.DateTimeField(_("posted at"), auto_now_add=True, db_default=Now(), db_index=True)
    posted_by = models.CharField(_("posted by worker"), max_length=128, blank=True, default="")

    class Meta:
        db_table = "offline_ledger_entries"
        verbose_name = _("journal entry")
        verbose_name_plural = _("journal")
        ordering = ["-posted_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["device_id", "local_id"], name="ledger_entry_once_per_payment"),
            models.CheckConstraint(condition=Q(amount__gt=0), name="ledger_entry_amount_positive"),
            models.CheckConstraint(condition=~Q(debit_account=models.F("credit_account")),
                                   name="ledger_entry_two_accounts"),
        ]

    def __str__(self):
        return f"{self.device_id}/{self.local_id} {self.amount} {self.currency}"


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
