"""Terminal output shared by the bundle_status and queue_status commands."""

from molam_offline.monitoring.figures import QueueFigure, WorkerRow, format_duration
from molam_offline.monitoring.thresholds import Thresholds


def print_queue(write, queue: QueueFigure, thresholds: Thresholds) -> None:
    oldest = f"{queue.oldest_pending_at:%Y-%m-%d %H:%M:%S}" if queue.oldest_pending_at else "-"
    write("Sync queue")
    write(f"  pending_bundles  {queue.pending}{'+' if queue.pending_capped else ''} "
          f"(alert above {thresholds.queue_size_max})")
    write(f"  oldest_bundle    {oldest} (waiting {format_duration(queue.oldest_pending_age)}; "
          f"alert above {format_duration(thresholds.queue_oldest_max)})")
    write(f"  failed, retrying {queue.failed}")
    write(f"  processing       {queue.processing}")
    for problem in queue.problems:
        write(f"  WARNING: {problem}; the reconciliation worker may be stuck")


def print_workers(write, workers: list[WorkerRow], thresholds: Thresholds) -> None:
    write(f"Reconciliation workers (stuck after {format_duration(thresholds.worker_heartbeat_max_age)} "
          "without a successful run)")
    if not workers:
        write("  no worker has reported yet")
    for worker in workers:
        state = "STUCK: escalate" if worker.stale else "ok"
        last_success = f"{worker.last_success_at:%Y-%m-%d %H:%M:%S}" if worker.last_success_at else "never"
        write(f"  {worker.worker_name:<32} last success {last_success} ({format_duration(worker.age)} ago)  {state}")
        if worker.last_error:
            write(f"    last error: {worker.last_error[:200]}")
