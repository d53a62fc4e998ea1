from django.core.management.base import BaseCommand
from django.utils import timezone

from molam_offline.monitoring import figures
from molam_offline.monitoring.thresholds import Level, get_thresholds

from ._report import print_queue, print_workers


class Command(BaseCommand):
    help = ("Print the last hour's bundles by status with average push attempts, the rejection rate, the top "
            "rejection reasons, the last rejected bundles and the sync queue. Exits 0 when every figure is within "
            "its threshold, 1 when a warning line is crossed, 2 when the runbook says to escalate.")

    def add_arguments(self, parser):
        parser.add_argument("--rejections", type=int, default=20,
                            help="How many of the last 24 hours' rejected bundles to list (default 20).")

    def handle(self, *args, rejections, **options):
        now = timezone.now()
        thresholds = get_thresholds()
        write = self.stdout.write

        status_rows = figures.bundle_status_last_hour(now)
        write("Bundles received in the last hour")
        write(f"  {'status':<16}{'count':>8}{'avg_attempts':>14}")
        for row in status_rows:
            average = f"{row.avg_push_attempts:.1f}" if row.avg_push_attempts is not None else "-"
            write(f"  {row.status:<16}{row.count:>8}{average:>14}")

        rate = figures.rejection_rate(status_rows)
        if rate.rate is None:
            write(f"Rejection rate: not judged, {rate.decided} bundles decided "
                  f"(at least {thresholds.rejection_rate_min_bundles} needed)")
        else:
            write(f"Rejection rate: {rate.rate * 100:.1f}% ({rate.rejected} of {rate.decided}); warning above "
                  f"{thresholds.rejection_rate_warning * 100:.0f}%, escalate above "
                  f"{thresholds.rejection_rate_escalation * 100:.0f}%  [{rate.level.name}]")

        reasons = figures.rejection_reasons(now)
        unknown = [row for row in reasons if not row.known]
        write("\nRejection reasons, last 24 hours")
        for row in reasons[:10]:
            marker = "  UNKNOWN: escalate" if not row.known else ""
            write(f"  {row.code or '(empty)':<28}{row.count:>8}{marker}")
        if not reasons:
            write("  none")

        write(f"\nLast {rejections} rejected bundles, last 24 hours")
        for bundle in figures.recent_rejections(now, limit=rejections):
            write(f"  {bundle.created_at:%Y-%m-%d %H:%M}  {bundle.bundle_id:<36} {bundle.device_id or '-':<20} "
                  f"attempts={bundle.push_attempts}  {bundle.rejected_reason or ''}")

        queue = figures.sync_queue_status(now)
        workers = figures.worker_heartbeats(now)
        write("")
        print_queue(write, queue, thresholds)
        print_workers(write, workers, thresholds)

        review = figures.review_backlog(now)
        write(f"\nWaiting for review: " + ", ".join(f"{status} {count}" for status, count in review.by_status.items())
              + f"; {review.stuck} waiting longer than {figures.format_duration(thresholds.review_stuck_after)} "
              f"(alert above {thresholds.review_stuck_max})  [{review.level.name}]")

        fraud = figures.confirmed_fraud_last_24h(now)
        if fraud:
            write(f"\nConfirmed fraud: {fraud} bundles rejected as confirmed_fraud in the last 24 hours: "
                  "escalate to the security team  [ESCALATION]")
        level = max([rate.level, queue.level, review.level,
                     Level.ESCALATION if unknown or fraud or any(w.stale for w in workers) else Level.OK])
        write(f"\nOverall: {level.name}")
        if level != Level.OK:
            raise SystemExit(level.value)
