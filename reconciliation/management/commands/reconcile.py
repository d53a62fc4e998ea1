import logging
import signal
import sys
import threading
import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError, close_old_connections

from bundles.models import Bundle
from reconciliation.models import QueueStatus, SyncQueueItem
from reconciliation.worker import EXIT_ERROR, EXIT_OK, EXIT_PARTIAL, ReconciliationWorker, RunSummary

logger = logging.getLogger(__name__)


class Command(BaseCommand):
    help = (
        "Post accepted bundles from offline_sync_queue to the ledger, each transaction exactly once. "
        "Without --loop it drains the queue and exits (WORKER_MODE=once); WORKER_MODE=loop or --loop keeps "
        "polling. BATCH_SIZE sets the default batch size. "
        f"Exit codes: {EXIT_OK} every claimed bundle was posted in full (or the queue was empty); "
        f"{EXIT_PARTIAL} partial failure: some transactions failed (for example insufficient funds) or some "
        f"bundles failed and will be retried or were dead-lettered; {EXIT_ERROR} error: the run stopped (for "
        "example the database is unreachable) or an option is wrong; 2 invalid command line."
    )

    def add_arguments(self, parser):
        config = settings.RECONCILIATION
        mode = parser.add_mutually_exclusive_group()
        mode.add_argument("--once", action="store_true",
                          help="Drain the queue in batches, then exit (the default unless WORKER_MODE=loop).")
        mode.add_argument("--loop", action="store_true",
                          help="Keep polling the queue until SIGTERM or Ctrl-C (default when WORKER_MODE=loop).")
        parser.add_argument("--batch-size", type=int, default=config["BATCH_SIZE"],
                            help=f"Queue rows claimed per batch (default: BATCH_SIZE or {config['BATCH_SIZE']}).")
        parser.add_argument("--interval", type=float, default=config["INTERVAL_SECONDS"],
                            help="Seconds --loop waits when the queue is empty (default: "
                                 f"{config['INTERVAL_SECONDS']}).")
        parser.add_argument("--bundle", dest="bundle_id", metavar="BUNDLE_ID",
                            help="Process only the queue row of this bundle.")
        parser.add_argument("--dry-run", action="store_true",
                            help="Post inside a transaction that is rolled back: report what would happen, "
                                 "claim and change nothing.")
        parser.add_argument("--worker-name",
                            help="Name in the heartbeat table (default: RECONCILE_WORKER_NAME or "
                                 "reconcile@<host name>).")

    def handle(self, *args, once, loop, batch_size, interval, bundle_id, dry_run, worker_name, **options):
        if batch_size < 1:
            raise CommandError(f"--batch-size must be at least 1, not {batch_size}.")
        if interval <= 0:
            raise CommandError(f"--interval must be more than 0 seconds, not {interval}.")
        mode = settings.RECONCILIATION["WORKER_MODE"]
        if mode not in ("once", "loop"):
            raise CommandError(f"WORKER_MODE must be 'once' or 'loop', not {mode!r}.")
        loop = loop or (mode == "loop" and not once)
        if loop and (dry_run or bundle_id):
            raise CommandError("--loop cannot be combined with --dry-run or --bundle.")
        if bundle_id:
            self.check_bundle(bundle_id)

        self.progress = None
        worker = ReconciliationWorker(name=worker_name, batch_size=batch_size, bundle_id=bundle_id, dry_run=dry_run,
                                      on_item=self.item_done)
        self.stop_on_signals(worker)

        if loop:
            self.run_loop(worker, interval)
            return

        summary = self.run_once(worker)
        self.stdout.write(("Dry run, nothing changed: " if dry_run else "") + str(summary))
        if summary.errors:
            self.stderr.write("Errors:\n  " + "\n  ".join(summary.errors))
        if summary.exit_code != EXIT_OK:
            sys.exit(summary.exit_code)

    def check_bundle(self, bundle_id: str) -> None:
        if not Bundle.objects.filter(bundle_id=bundle_id).exists():
            raise CommandError(f"Bundle {bundle_id} not found.")
        statuses = list(SyncQueueItem.objects.filter(bundle_id=bundle_id).values_list("status", flat=True))
        if not {QueueStatus.PENDING, QueueStatus.FAILED, QueueStatus.PROCESSING} & set(statuses):
            self.stderr.write(f"Bundle {bundle_id} has no pending queue row (rows: {', '.join(statuses) or 'none'}); "
                              "requeue a dead row in the admin first.")

    def run_once(self, worker: ReconciliationWorker) -> RunSummary:
        total = worker.claimable().count()
        if total and self.stdout.isatty():
            from tqdm import tqdm

            self.progress = tqdm(total=total, unit="bundle", desc="Reconciling", file=sys.stdout)
        try:
            return worker.run_once()
        except DatabaseError as error:
            raise CommandError(f"Reconciliation stopped on a database error: {error}", returncode=EXIT_ERROR)
        finally:
            if self.progress is not None:
                self.progress.close()

    def run_loop(self, worker: ReconciliationWorker, interval: float) -> None:
        logger.info("Reconciliation loop of %s started, polling every %s seconds", worker.name, interval)
        while not worker.stop_requested:
            try:
                summary = worker.run_once()
            except DatabaseError:
                # Logged with its traceback by the worker; the database may come back, so keep polling.
                close_old_connections()
                summary = None
            if worker.stop_requested:
                break
            if summary is None or not summary.bundles:
                self.sleep(worker, interval)
        logger.info("Reconciliation loop of %s stopped", worker.name)

    def sleep(self, worker: ReconciliationWorker, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not worker.stop_requested and time.monotonic() < deadline:
            time.sleep(min(0.5, deadline - time.monotonic()))

    def item_done(self, item, result: str) -> None:
        # Without a terminal the worker's log lines report each bundle.
        if self.progress is not None:
            self.progress.update(1)
            self.progress.set_postfix_str(f"{item.bundle_id}: {result}", refresh=False)

    def stop_on_signals(self, worker: ReconciliationWorker) -> None:
        """Finish the current bundle on SIGTERM or Ctrl-C, then release the rest of the batch and exit."""
        if threading.current_thread() is not threading.main_thread():
            return  # Only the main thread may set signal handlers (call_command from a thread).

        def request_stop(signum, frame):
            logger.info("Signal %s received: worker %s stops after the current bundle", signum, worker.name)
            worker.stop_requested = True

        signal.signal(signal.SIGTERM, request_stop)
        signal.signal(signal.SIGINT, request_stop)
