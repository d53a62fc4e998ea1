from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from bundles.models import Bundle
from molam_offline.monitoring.diagnosis import diagnose_bundle
from molam_offline.monitoring.runbook import admin_action_text
from molam_offline.monitoring.thresholds import Level

NOT_FOUND_EXIT_CODE = 3


class Command(BaseCommand):
    help = ("Diagnose one bundle: its status and reason, transactions, audit trail, device, the policy in force, "
            "its sync queue rows, the matching runbook issue and the admin action that resolves it. Exits 0 when "
            "the bundle needs nothing, 1 when it needs an operator, 2 when the runbook says to escalate, 3 when "
            "no bundle has this ID.")

    def add_arguments(self, parser):
        parser.add_argument("bundle_id", help="The bundle's bundle_id, as the device sent it.")

    def handle(self, *args, bundle_id, **options):
        now = timezone.now()
        try:
            diagnosis = diagnose_bundle(bundle_id, now)
        except Bundle.DoesNotExist:
            raise CommandError(f"Bundle {bundle_id!r} not found; check the ID in the admin's bundle list "
                               "(search matches the exact bundle_id).", returncode=NOT_FOUND_EXIT_CODE)

        self.print_bundle(diagnosis)
        self.print_device_and_policy(diagnosis)
        self.print_transactions(diagnosis)
        self.print_queue(diagnosis)
        self.print_audit(diagnosis)
        self.print_resolution(diagnosis)

        self.stdout.write(f"\nOverall: {diagnosis.level.name}")
        if diagnosis.level != Level.OK:
            raise SystemExit(diagnosis.level.value)

    def print_bundle(self, diagnosis):
        bundle = diagnosis.bundle
        write = self.stdout.write
        write(f"Bundle {bundle.bundle_id}")
        write(f"  device            {bundle.device_id}  sequence {bundle.sequence}  country {bundle.country or '-'}")
        write(f"  status            {bundle.status}")
        write(f"  reason_code       {bundle.reason_code or '-'}")
        write(f"  rejected_reason   {bundle.rejected_reason or '-'}")
        write(f"  push_attempts     {bundle.push_attempts}")
        write(f"  received at       {bundle.created_at:%Y-%m-%d %H:%M:%S}  "
              f"(device sealed it at {bundle.device_created_at:%Y-%m-%d %H:%M:%S}, "
              f"last sent at {bundle.device_sent_at:%Y-%m-%d %H:%M:%S} device clock)")
        validated = f"{bundle.validated_at:%Y-%m-%d %H:%M:%S}" if bundle.validated_at else "not yet"
        write(f"  validated at      {validated}")
        total = f"{bundle.total_amount} {bundle.currency}".strip()
        write(f"  transactions      {bundle.tx_count}, total {total}, "
              f"highest fraud score {bundle.max_sira_score if bundle.max_sira_score is not None else '-'}")
        write(f"  reconciliation    {bundle.reconciliation_status}")
        for finding in diagnosis.findings:
            write(f"  FINDING: {finding}")

    def print_device_and_policy(self, diagnosis):
        write = self.stdout.write
        device = diagnosis.device
        write("\nDevice")
        if device is None:
            write(f"  {diagnosis.bundle.device_id} is not registered: register it with POST /offline/devices "
                  "(pay_admin role)")
        else:
            last_seen = f"{device.last_seen_at:%Y-%m-%d %H:%M:%S}" if device.last_seen_at else "never"
            write(f"  {device.device_id}  status {device.status}  {device.tenant_type} {device.tenant_id}  "
                  f"country {device.country}")
            write(f"  key {device.key_alg} fingerprint {device.key_fingerprint or '-'} registered "
                  f"{device.key_registered_at:%Y-%m-%d %H:%M}")
            write(f"  created {device.created_at:%Y-%m-%d %H:%M}  last seen {last_seen}")
            conflict = (f"{device.key_conflict_detected_at:%Y-%m-%d %H:%M}" if device.key_conflict_detected_at
                        else "none")
            write(f"  missing sequence numbers {device.missing_sequence_count}  key conflict {conflict}")
            if device.status_reason:
                write(f"  status reason: {device.status_reason}")
        for day in diagnosis.activity:
            write(f"  activity {day.activity_date}  {day.tx_count} transactions  total {day.total_amount}")

        policy = diagnosis.policy
        write("\nPolicy in force")
        if policy is None:
            write(f"  none for country {diagnosis.bundle.country or '-'}")
        else:
            write(f"  {policy.country} ({policy.currency}, {policy.timezone}){'' if policy.is_active else ' INACTIVE'}")
            write(f"  max per device per day: {policy.max_offline_per_device_per_day} transactions, "
                  f"{policy.max_amount_per_device_per_day}; max per transaction {policy.max_amount_per_transaction}")
            write(f"  max bundle age {policy.max_bundle_age_hours} h; max clock skew "
                  f"{policy.effective_max_clock_skew_minutes} min")
            write(f"  fraud score: review at {policy.sira_review_threshold}, quarantine at "
                  f"{policy.sira_quarantine_threshold}; four-eyes release above {policy.four_eyes_amount_threshold}")

    def print_transactions(self, diagnosis):
        write = self.stdout.write
        write("\nTransactions (highest fraud score first)")
        for tx in diagnosis.transactions:
            failure = f"  {tx.failed_check}: {tx.failure_reason}" if tx.failed_check else ""
            score = tx.sira_score if tx.sira_score is not None else "-"
            write(f"  {tx.local_id:<20} {tx.type:<16} {tx.amount:>12} {tx.currency}  score {score}  "
                  f"{tx.status}{failure}")

    def print_queue(self, diagnosis):
        write = self.stdout.write
        write("\nSync queue rows")
        if not diagnosis.queue_items:
            write("  none")
        for item in diagnosis.queue_items:
            write(f"  {item.status:<10} priority {item.priority}  attempts {item.attempts}  "
                  f"queued {item.created_at:%Y-%m-%d %H:%M:%S}  {item.last_error[:200]}")

    def print_audit(self, diagnosis):
        write = self.stdout.write
        write("\nAudit trail (newest first)")
        for row in diagnosis.audit_rows:
            write(f"  {row.created_at:%Y-%m-%d %H:%M:%S}  {row.action:<24} {row.actor:<28} {row.reason[:120]}")

    def print_resolution(self, diagnosis):
        write = self.stdout.write
        issue = diagnosis.issue
        write("\nRunbook issue")
        if issue is None:
            write("  no runbook issue matches" + (": nothing to resolve" if diagnosis.level == Level.OK else
                                                 "; see docs/operations.md"))
            return
        write(f"  Issue {issue.number}: {issue.title}")
        write(f"  {issue.resolution}")
        for key in issue.actions:
            write(f"  admin action: {admin_action_text(key)}")
