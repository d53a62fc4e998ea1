"""The quick start command against the test database: demo data arrives as signed HTTP pushes."""

import signal
import socket
import subprocess
import sys
import time

import pytest

from bundles.models import Bundle, BundleStatus
from tests.processes import BASE_DIR, free_port, run_manage, stop_process, subprocess_env

# The command and its server are other processes, so the test's rows must be committed.
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def test_quickstart_pushes_demo_bundles_over_http():
    port = free_port()

    result = run_manage("quickstart", "--no-serve", "--port", str(port), timeout=300)

    assert result.returncode == 0, result.stderr[-3000:]
    assert "Admin login created, shown only once: admin / " in result.stdout
    assert "pay_admin API token (user demo-pay-admin): " in result.stdout
    assert "Demo data pushed; stopping the server (--no-serve)." in result.stdout
    assert "Serving on" not in result.stdout
    demo = Bundle.objects.filter(bundle_id__startswith="bundle_sim_demo_")
    assert demo.filter(status=BundleStatus.ACCEPTED).count() >= 6
    rejected = set(demo.filter(status=BundleStatus.REJECTED).values_list("reason_code", flat=True))
    assert {"invalid_signature", "unknown_device", "device_blocked"} <= rejected
    assert set(demo.values_list("source_ip", flat=True)) == {"127.0.0.1"}
    assert not listening(port)


def test_quickstart_stops_its_server_on_sigterm():
    port = free_port()
    command = subprocess.Popen([sys.executable, str(BASE_DIR / "manage.py"), "quickstart", "--port", str(port)],
                               cwd=BASE_DIR, env=subprocess_env(), stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True)
    try:
        for line in command.stdout:
            if line.startswith("Serving on"):
                break
        assert listening(port)

        command.send_signal(signal.SIGTERM)
        command.wait(timeout=60)

        deadline = time.monotonic() + 15
        while listening(port) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not listening(port)
    finally:
        stop_process(command)
