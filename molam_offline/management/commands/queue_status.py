from django.core.management.base import BaseCommand
from django.utils import timezone

from molam_offline.monitoring import figures
from molam_offline.monitoring.thresholds import Level, get_thresholds

from ._report import print_queue, print_workers


class Command(BaseCommand):
    help = ("Print the sync queue's pending bundles, the oldest pending one and each reconciliation worker's last "
            "heartbeat. Exits 0 when all are within thresholds, 1 when the queue holds more than 500 pending "
            "bundles or one waits more than an hour, 2 when a worker has had no successful run for 30 minutes.")

    def handle(self, *args, **options):
        now = timezone.now()
        thresholds = get_thresholds()
        queue = figures.sync_queue_status(now)
        workers = figures.worker_heartbeats(now)
        print_queue(self.stdout.write, queue, thresholds)
        print_workers(self.stdout.write, workers, thresholds)

        level = max(queue.level, Level.ESCALATION if any(worker.stale for worker in workers) else Level.OK)
        self.stdout.write(f"Overall: {level.name}")
        if level != Level.OK:
            raise SystemExit(level.value)
