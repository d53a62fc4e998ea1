import logging

from django.core.management.base import BaseCommand, CommandError

from devices.actions import block_device

from bundles.simulator import Simulator

logger = logging.getLogger(__name__)


class Command(BaseCommand):
    help = ("Register simulated devices through the API and push real signed bundles over HTTP: good ones and "
            "one for each failure the runbook describes. Exits 1 if an outcome differs from the runbook's.")

    def add_arguments(self, parser):
        parser.add_argument("--base-url", default="http://127.0.0.1:8000",
                            help="Server to push to (default: http://127.0.0.1:8000).")
        parser.add_argument("--token", required=True, help="API token of a pay_admin user, for registration.")
        parser.add_argument("--run-id", help="Suffix of the simulated device IDs (default: random).")

    def handle(self, *args, base_url, token, run_id, **options):
        simulator = Simulator(base_url, token, run_id=run_id)

        def block(device_id):
            # The server and this command share the database in the quick start; the block
            # goes through the same service as the admin action.
            block_device(acting_user=None, device_id=device_id, reason="simulated stolen terminal")

        try:
            outcomes = simulator.run_all(block)
        except (OSError, RuntimeError) as error:
            raise CommandError(f"Simulation against {base_url} failed: {error}") from error

        mismatches = 0
        for outcome in outcomes:
            mark = "ok " if outcome.as_expected else "!! "
            mismatches += not outcome.as_expected
            self.stdout.write(f"{mark}{outcome.scenario:<26} {outcome.bundle_id:<40} HTTP {outcome.http_status} "
                              f"{outcome.status or '-':<15} {outcome.reason_code or '':<22} "
                              f"(expected {outcome.expected_status} {outcome.expected_reason or ''})")
        self.stdout.write(f"{len(outcomes)} pushes, {mismatches} not as the runbook expects.")
        if mismatches:
            raise CommandError(f"{mismatches} pushes did not end as the runbook expects", returncode=1)
