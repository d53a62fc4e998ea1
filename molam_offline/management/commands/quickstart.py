import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from rest_framework.authtoken.models import Token

from bundles.models import Bundle
from bundles.simulator import SENEGAL_NUMBERS, Simulator
from devices.actions import block_device
from molam_offline.periodic import run_periodic_once
from molam_offline.roles import PAY_ADMIN
from reconciliation.services import OpeningBalance, set_opening_balances

DEMO_PAY_ADMIN = "demo-pay-admin"
# Opening balances of the simulator's senders, in XOF: enough that every demo payment
# posts, even if validation accepts all of them (the agents send 4 x 99,000 and 95,000).
DEMO_OPENING_BALANCES = {number: Decimal("250000") for number in SENEGAL_NUMBERS[:100]}
DEMO_OPENING_BALANCES[SENEGAL_NUMBERS[150]] = Decimal("500000")
DEMO_OPENING_BALANCES[SENEGAL_NUMBERS[151]] = Decimal("500000")


class Command(BaseCommand):
    help = ("Set up and run the product on this machine: migrate, create an admin login, start the server on "
            "127.0.0.1, push demo data through it as signed bundles, and keep serving until Ctrl-C.")

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=8000, help="TCP port on 127.0.0.1 (default 8000).")
        parser.add_argument("--no-serve", action="store_true",
                            help="Stop after pushing the demo data instead of serving.")
        parser.add_argument("--periodic-seconds", type=int, default=30,
                            help="Interval of the in-process periodic jobs in seconds (default 30).")

    def handle(self, *args, port, no_serve, periodic_seconds, **options):
        if not settings.QUICKSTART:
            raise CommandError("quickstart is for a local run: set MOLAM_QUICKSTART=1.")

        call_command("migrate", interactive=False, verbosity=0)
        self.stdout.write("Database migrated.")
        self.ensure_admin()
        token = self.ensure_demo_token()

        if port_in_use(port):
            raise CommandError(f"Port {port} on 127.0.0.1 is in use; stop that server or pass --port.")
        server = self.start_server(port)
        # SIGTERM (from a process manager or `kill`) stops the server child like Ctrl-C does,
        # instead of leaving it running.
        signal.signal(signal.SIGTERM, stop_on_sigterm)
        try:
            wait_for_port(port, server)
            self.load_demo_balances()
            self.push_demo_data(port, token)
            run_periodic_once()
            if no_serve:
                self.stdout.write(self.style.SUCCESS("\nDemo data pushed; stopping the server (--no-serve)."))
                return
            self.stdout.write(self.style.SUCCESS(f"\nServing on http://127.0.0.1:{port}/admin/ "
                                                 f"(API: http://127.0.0.1:{port}/offline/). Ctrl-C stops."))
            while server.poll() is None:
                time.sleep(periodic_seconds)
                run_periodic_once()
            raise CommandError(f"The server stopped with exit code {server.returncode}.")
        except KeyboardInterrupt:
            self.stdout.write("Stopping.")
        finally:
            if server.poll() is None:
                server.terminate()
                server.wait(timeout=10)

    def ensure_admin(self) -> None:
        User = get_user_model()
        if User.objects.filter(username="admin").exists():
            self.stdout.write("Admin login: admin (password printed at its creation; reset it with "
                              "'manage.py changepassword admin').")
            return
        password = secrets.token_urlsafe(12)
        User.objects.create_superuser("admin", "admin@localhost", password)
        self.stdout.write(self.style.WARNING(f"Admin login created, shown only once: admin / {password}"))

    def ensure_demo_token(self) -> str:
        User = get_user_model()
        user, created = User.objects.get_or_create(username=DEMO_PAY_ADMIN,
                                                   defaults={"email": "pay-admin@localhost"})
        if created:
            user.set_unusable_password()
            user.save()
        user.groups.add(Group.objects.get(name=PAY_ADMIN))
        token, _ = Token.objects.get_or_create(user=user)
        self.stdout.write(f"pay_admin API token (user {DEMO_PAY_ADMIN}): {token.key}")
        return token.key

    def start_server(self, port: int) -> subprocess.Popen:
        manage = Path(settings.BASE_DIR) / "manage.py"
        env = {**os.environ, "MOLAM_QUICKSTART": "1"}
        # --insecure serves the admin's static files without DEBUG.
        return subprocess.Popen([sys.executable, str(manage), "runserver", f"127.0.0.1:{port}", "--noreload",
                                 "--insecure"], env=env)

    def load_demo_balances(self) -> None:
        rows = [OpeningBalance(identifier=number, currency="XOF", amount=amount)
                for number, amount in DEMO_OPENING_BALANCES.items()]
        changed = set_opening_balances(rows, source="quickstart demo data")
        self.stdout.write(f"Demo opening balances loaded for {len(rows)} senders ({changed} changed).")

    def push_demo_data(self, port: int, token: str) -> None:
        if Bundle.objects.filter(device__device_id__startswith="SIM_").exists():
            self.stdout.write("Demo bundles are already in the database; not pushing them again.")
            return

        def block(device_id):
            block_device(acting_user=None, device_id=device_id, reason="demo: stolen terminal")

        simulator = Simulator(f"http://127.0.0.1:{port}", token, run_id="DEMO")
        outcomes = simulator.run_all(block)
        self.stdout.write(f"Demo data: {len(outcomes)} signed bundles pushed over HTTP.")
        for outcome in outcomes:
            self.stdout.write(f"  {outcome.scenario:<26} {outcome.bundle_id:<36} {outcome.status or '-':<15} "
                              f"{outcome.reason_code or ''}")


def stop_on_sigterm(signum, frame):
    raise KeyboardInterrupt


def port_in_use(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def wait_for_port(port: int, server: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise CommandError(f"The server exited with code {server.returncode} before listening.")
        if port_in_use(port):
            return
        time.sleep(0.2)
    raise CommandError(f"The server did not listen on 127.0.0.1:{port} within {timeout:.0f} seconds.")
