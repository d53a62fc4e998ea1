"""The reconciliation worker: claims offline_sync_queue rows and posts their bundles to the ledger.

Exactly once, also when workers crash or run at the same time:

- A worker claims rows with SELECT ... FOR UPDATE SKIP LOCKED and a lease, so no other
  worker claims a row while its lease runs, and a killed worker's rows return to the
  queue when the lease expires (measured on the database clock, which all workers share).
- Each bundle is posted in one database transaction that inserts the journal entries,
  updates the balances, marks the transactions, updates the bundle and completes the queue
  row. A crash before the commit leaves none of it; after the commit, all of it.
- The unique constraint on journal (device_id, local_id) rejects a second posting of a
  payment even if a bundle is processed twice.
"""

import logging
import os
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.db.models.functions import Now
from django.utils import timezone

from audit.models import AuditAction
from audit.services import record
from bundles.models import Bundle, BundleStatus, ReconciliationStatus, Transaction

from .ledger import POSTABLE_STATUSES, BundlePosting, account_keys, ensure_accounts, post_bundle_transactions
from .models import QueueStatus, SyncQueueItem, WorkerHeartbeat

logger = logging.getLogger(__name__)

# Exit codes of `manage.py reconcile`; argparse exits with 2 on invalid options.
EXIT_OK = 0
EXIT_ERROR = 1
EXIT_PARTIAL = 3

MAX_RETRY_DELAY = timedelta(hours=1)


@dataclass
class RunSummary:
    """Counts of one worker run."""

    bundles: int = 0
    posted: int = 0
    failed: int = 0
    skipped: int = 0
    bundles_with_exceptions: int = 0
    bundles_retrying: int = 0
    dead_lettered: int = 0
    lease_lost: int = 0
    errors: list[str] = field(default_factory=list)

    def add_posting(self, posting: BundlePosting) -> None:
        self.bundles += 1
        self.posted += len(posting.posted)
        self.failed += len(posting.failed)
        self.skipped += len(posting.skipped)
        if posting.failed:
            self.bundles_with_exceptions += 1

    @property
    def exit_code(self) -> int:
        if self.failed or self.bundles_retrying or self.dead_lettered:
            return EXIT_PARTIAL
        return EXIT_OK

    def as_dict(self) -> dict:
        return {"bundles": self.bundles, "posted": self.posted, "failed": self.failed, "skipped": self.skipped,
                "bundles_with_exceptions": self.bundles_with_exceptions, "bundles_retrying": self.bundles_retrying,
                "dead_lettered": self.dead_lettered, "lease_lost": self.lease_lost}

    def __str__(self) -> str:
        return (f"{self.bundles} bundles reconciled: {self.posted} transactions posted, {self.failed} failed, "
                f"{self.skipped} skipped; {self.bundles_with_exceptions} bundles with exceptions, "
                f"{self.bundles_retrying} bundles to retry, {self.dead_lettered} dead-lettered")


def worker_config(name: str) -> int | float:
    return settings.RECONCILIATION[name]


def default_worker_name() -> str:
    return os.environ.get("RECONCILE_WORKER_NAME") or f"reconcile@{socket.gethostname()}"


class ReconciliationWorker:
    """Claim queue rows in batches and post each bundle in its own database transaction."""

    def __init__(self, *, name: str | None = None, batch_size: int | None = None, bundle_id: str | None = None,
                 dry_run: bool = False, on_item: Callable[[SyncQueueItem, str], None] | None = None):
        self.name = name or default_worker_name()
        # Unique per process and run: a restarted worker must not mistake its predecessor's rows for its own.
        self.lock_id = f"{self.name}:{os.getpid()}:{uuid.uuid4().hex[:8]}"[:128]
        self.batch_size = batch_size or worker_config("BATCH_SIZE")
        self.bundle_id = bundle_id
        self.dry_run = dry_run
        self.on_item = on_item
        self.lease = timedelta(seconds=worker_config("LEASE_SECONDS"))
        self.max_attempts = worker_config("MAX_ATTEMPTS")
        self.retry_delay = timedelta(seconds=worker_config("RETRY_DELAY_SECONDS"))
        self.stop_requested = False

    # Runs ---------------------------------------------------------------------------

    def run_once(self, *, max_batches: int | None = None) -> RunSummary:
        """Process batches until no row is claimable (or `max_batches` ran) and return the counts."""
        summary = RunSummary()
        logger.info("Reconciliation worker %s starting (batch size %d%s%s)", self.lock_id, self.batch_size,
                    f", bundle {self.bundle_id}" if self.bundle_id else "", ", dry run" if self.dry_run else "")
        self.beat_started()
        try:
            if self.dry_run:
                self.dry_run_pass(summary)
            else:
                batches = 0
                while not self.stop_requested and (max_batches is None or batches < max_batches):
                    batch = self.claim_batch(summary)
                    if not batch:
                        break
                    batches += 1
                    self.process_batch(batch, summary)
        except Exception as error:
            self.beat_finished(error=f"{type(error).__name__}: {error}")
            logger.exception("Reconciliation worker %s stopped on an error", self.lock_id)
            raise

        self.beat_finished(error="; ".join(summary.errors))
        logger.info("Reconciliation worker %s finished: %s", self.lock_id, summary)
        return summary

    def process_batch(self, batch: list[SyncQueueItem], summary: RunSummary) -> None:
        # NOTE: the lease is not renewed during a batch. Rows still unprocessed when it expires
        # go to another worker, which is safe (this worker then skips them) but costs an attempt.
        for position, item in enumerate(batch):
            if self.stop_requested:
                self.release(batch[position:])
                return
            self.process_item(item, summary)

    def dry_run_pass(self, summary: RunSummary) -> None:
        """Post every claimable bundle inside a transaction that is rolled back, claiming nothing."""
        for item in list(self.claimable().order_by("priority", "created_at", "id")):
            if self.stop_requested:
                return
            self.process_item(item, summary)

    # Claiming -----------------------------------------------------------------------

    def claimable(self):
        # Database clock, so that workers on hosts with skewed clocks agree on lease expiry.
        ready = Q(status__in=[QueueStatus.PENDING, QueueStatus.FAILED]) & (
            Q(available_at__isnull=True) | Q(available_at__lte=Now()))
        lease_expired = Q(status=QueueStatus.PROCESSING, lease_expires_at__lt=Now())
        rows = SyncQueueItem.objects.filter(ready | lease_expired)
        if self.bundle_id:
            rows = rows.filter(bundle_id=self.bundle_id)
        return rows

    def claim_batch(self, summary: RunSummary) -> list[SyncQueueItem]:
        """Lease up to batch_size rows, highest priority (lowest number) and oldest first."""
        while True:
            claimed, found = self.claim_rows(summary)
            # Only dead-lettered rows found: look again, so that they do not end the run early.
            if claimed or not found:
                return claimed

    def claim_rows(self, summary: RunSummary) -> tuple[list[SyncQueueItem], int]:
        """Claim one batch and return the claimed rows and how many claimable rows were found."""
        with transaction.atomic():
            rows = list(self.claimable().select_for_update(skip_locked=True)
                        .order_by("priority", "created_at", "id")[:self.batch_size])
            if not rows:
                return [], 0

            claimed = []
            for row in rows:
                if row.status == QueueStatus.PROCESSING and row.attempts >= self.max_attempts:
                    # Its lease ran out on the last allowed attempt: the worker died on this bundle
                    # every time (out of memory, for example), so stop handing it to workers.
                    self.dead_letter(row, f"lease expired after {row.attempts} attempts; the worker "
                                          f"{row.locked_by} never finished this bundle")
                    summary.dead_lettered += 1
                    continue
                claimed.append(row)

            SyncQueueItem.objects.filter(pk__in=[row.pk for row in claimed]).update(
                status=QueueStatus.PROCESSING, locked_by=self.lock_id, lease_expires_at=Now() + self.lease,
                attempts=F("attempts") + 1, updated_at=Now())

        for row in claimed:
            if row.status == QueueStatus.PROCESSING:
                logger.warning("Reclaimed bundle %s from worker %s after its lease expired", row.bundle_id,
                               row.locked_by)
            row.status, row.locked_by, row.attempts = QueueStatus.PROCESSING, self.lock_id, row.attempts + 1
        if claimed:
            logger.info("Worker %s claimed %d queue rows", self.lock_id, len(claimed))
        return claimed, len(rows)

    def release(self, items: list[SyncQueueItem]) -> None:
        """Return unprocessed claimed rows to the queue at once, without counting the attempt."""
        released = SyncQueueItem.objects.filter(pk__in=[item.pk for item in items], status=QueueStatus.PROCESSING,
                                                locked_by=self.lock_id).update(
            status=QueueStatus.PENDING, locked_by="", lease_expires_at=None, attempts=F("attempts") - 1,
            updated_at=Now())
        logger.info("Worker %s stopping: released %d claimed queue rows", self.lock_id, released)

    # One bundle ---------------------------------------------------------------------

    def process_item(self, item: SyncQueueItem, summary: RunSummary) -> None:
        """Post one claimed row's bundle; a failure is recorded on the row and does not stop the batch."""
        try:
            result = self.post_item(item, summary)
        except Exception as error:  # Any error of one bundle is recorded on its row; the batch goes on.
            logger.exception("Posting bundle %s (queue row %s, attempt %d) failed", item.bundle_id, item.pk,
                             item.attempts)
            if self.dry_run:
                summary.errors.append(f"{item.bundle_id}: {error}")
                result = "error"
            else:
                result = self.record_failure(item, f"{type(error).__name__}: {error}", summary)
        if self.on_item:
            self.on_item(item, result)

    def post_item(self, item: SyncQueueItem, summary: RunSummary) -> str:
        """Post the bundle of `item` in one database transaction; return a one-word result."""
        accepted = (Transaction.objects.filter(bundle_id=item.bundle_id, status__in=POSTABLE_STATUSES)
                    .only("sender", "receiver", "currency"))
        if not self.dry_run:
            ensure_accounts(account_keys(accepted))

        with transaction.atomic():
            if self.dry_run:
                ensure_accounts(account_keys(accepted))  # Rolled back with the rest of the dry run.
            bundle = Bundle.objects.select_for_update().get(bundle_id=item.bundle_id)
            current = SyncQueueItem.objects.select_for_update().get(pk=item.pk)
            if not self.dry_run and (current.status != QueueStatus.PROCESSING or current.locked_by != self.lock_id):
                # The lease ran out and another worker claimed the row, so that worker posts the bundle.
                logger.warning("Worker %s lost the lease on bundle %s to %s (status %s); skipping it", self.lock_id,
                               item.bundle_id, current.locked_by or "nobody", current.status)
                summary.lease_lost += 1
                return "lease lost"

            if bundle.status != BundleStatus.ACCEPTED:
                self.dead_letter(current, f"bundle {bundle.bundle_id} is {bundle.status}; only accepted bundles "
                                          f"are posted. Accept it, then requeue this row.")
                summary.dead_lettered += 1
                self.finish_dry_run()
                return "dead"

            posting = post_bundle_transactions(bundle, worker=self.lock_id)
            self.complete(current, bundle, posting)
            summary.add_posting(posting)
            self.pause_for_tests()
            self.finish_dry_run()

        logger.info("Bundle %s from device %s reconciled%s: %d posted, %d failed, %d skipped", bundle.bundle_id,
                    bundle.device_id, " (dry run, rolled back)" if self.dry_run else "", len(posting.posted),
                    len(posting.failed), len(posting.skipped))
        return str(posting.reconciliation_status)

    def complete(self, item: SyncQueueItem, bundle: Bundle, posting: BundlePosting) -> None:
        """Mark the locked queue row done and store the outcome on the bundle, with an audit row."""
        now = timezone.now()
        item.status = QueueStatus.DONE
        item.outcome = posting.as_outcome()
        item.processed_at = now
        item.locked_by = ""
        item.lease_expires_at = None
        item.last_error = ""
        item.save(update_fields=["status", "outcome", "processed_at", "locked_by", "lease_expires_at", "last_error",
                                 "updated_at"])

        old_status = bundle.reconciliation_status
        bundle.reconciliation_status = posting.reconciliation_status
        bundle.reconciled_at = now
        bundle.save(update_fields=["reconciliation_status", "reconciled_at", "updated_at"])

        action = AuditAction.RECONCILIATION_EXCEPTION if posting.failed else AuditAction.RECONCILED
        record(action, bundle_id=bundle.bundle_id, device_id=bundle.device_id, country=bundle.country,
               actor=f"worker:{self.name}"[:254],
               old_values={"reconciliation_status": old_status},
               new_values={"reconciliation_status": str(posting.reconciliation_status)},
               reason="; ".join(f"{local_id}: {reason}" for local_id, reason in posting.failed.items()),
               details={"queue_item_id": item.pk, "attempt": item.attempts, "posted": len(posting.posted),
                        "failed": posting.failed, "skipped": len(posting.skipped)})

    def record_failure(self, item: SyncQueueItem, error: str, summary: RunSummary) -> str:
        """Store the error on the row: retry it later, or dead-letter it after the last allowed attempt."""
        with transaction.atomic():
            current = (SyncQueueItem.objects.select_for_update()
                       .filter(pk=item.pk, status=QueueStatus.PROCESSING, locked_by=self.lock_id).first())
            if current is None:
                summary.lease_lost += 1
                return "lease lost"
            if current.attempts >= self.max_attempts:
                self.dead_letter(current, error)
                summary.dead_lettered += 1
                summary.errors.append(f"{item.bundle_id}: {error}")
                return "dead"

            delay = min(self.retry_delay * 2 ** max(current.attempts - 1, 0), MAX_RETRY_DELAY)
            SyncQueueItem.objects.filter(pk=current.pk).update(
                status=QueueStatus.FAILED, last_error=error[:4000], locked_by="", lease_expires_at=None,
                available_at=Now() + delay, updated_at=Now())
        logger.warning("Bundle %s will be retried in %s (attempt %d of %d)", item.bundle_id, delay,
                       current.attempts, self.max_attempts)
        summary.bundles_retrying += 1
        summary.errors.append(f"{item.bundle_id}: {error}")
        return "retry"

    def dead_letter(self, item: SyncQueueItem, error: str) -> None:
        """Move a locked row to the dead letters; it stays there until an operator requeues it."""
        SyncQueueItem.objects.filter(pk=item.pk).update(status=QueueStatus.DEAD, last_error=error[:4000],
                                                        locked_by="", lease_expires_at=None, updated_at=Now())
        Bundle.objects.filter(bundle_id=item.bundle_id, reconciliation_status=ReconciliationStatus.QUEUED).update(
            reconciliation_status=ReconciliationStatus.FAILED)
        record(AuditAction.QUEUE_DEAD_LETTERED, bundle_id=item.bundle_id, actor=f"worker:{self.name}"[:254],
               reason=error, details={"queue_item_id": item.pk, "attempts": item.attempts},
               new_values={"status": QueueStatus.DEAD})
        logger.error("Bundle %s dead-lettered after %d attempts: %s", item.bundle_id, item.attempts, error)

    def finish_dry_run(self) -> None:
        if self.dry_run:
            transaction.set_rollback(True)

    def pause_for_tests(self) -> None:
        # Test only: hold the open posting transaction so that a test can kill the process inside it.
        delay = worker_config("TEST_BUNDLE_DELAY_SECONDS")
        if delay:
            time.sleep(delay)

    # Heartbeat ----------------------------------------------------------------------

    def beat_started(self) -> None:
        if self.dry_run:
            return
        WorkerHeartbeat.objects.update_or_create(
            worker_name=self.name[:128],
            defaults={"hostname": socket.gethostname()[:255], "pid": os.getpid(), "last_run_at": timezone.now()})

    def beat_finished(self, *, error: str) -> None:
        if self.dry_run:
            return
        values = {"last_error": error[:4000]}
        if not error:
            values["last_success_at"] = timezone.now()
        WorkerHeartbeat.objects.filter(worker_name=self.name[:128]).update(updated_at=timezone.now(), **values)
