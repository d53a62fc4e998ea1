"""Shared benchmark plumbing: the benchmark database, machine facts, percentiles.

Every benchmark runs against its own database, `molam_offline_bench` by default, on the
PostgreSQL server that the settings use (the embedded one when DATABASE_URL is unset).
The developer's database is never touched.
"""

import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import quote

BASE_DIR = Path(__file__).resolve().parent.parent
BENCH_DATABASE = "molam_offline_bench"


def server_settings() -> dict:
    """Return the connection settings of the PostgreSQL server, without a database name."""
    os.environ.setdefault("MOLAM_QUICKSTART", "1")
    url = os.environ.get("DATABASE_URL")
    if url:
        import dj_database_url

        parsed = dj_database_url.parse(url)
        return {key: parsed.get(key) or "" for key in ("USER", "PASSWORD", "HOST", "PORT")}

    from molam_offline.embedded_db import ensure_server

    embedded = ensure_server()
    return {"USER": embedded["USER"], "PASSWORD": embedded["PASSWORD"], "HOST": embedded["HOST"], "PORT": ""}


def database_url(database: str) -> str:
    server = server_settings()
    port = f":{server['PORT']}" if server["PORT"] else ""
    return (f"postgres://{server['USER']}:{quote(server['PASSWORD'], safe='')}@{quote(server['HOST'], safe='')}"
            f"{port}/{database}")


def psycopg_connect(database: str, **options):
    import psycopg

    server = server_settings()
    return psycopg.connect(dbname=database, user=server["USER"], password=server["PASSWORD"] or None,
                           host=server["HOST"], port=server["PORT"] or None, **options)


def create_database(database: str = BENCH_DATABASE, *, recreate: bool) -> bool:
    """Create the benchmark database; with `recreate`, drop it first. Return whether it was created."""
    with psycopg_connect("postgres", autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [database]).fetchone()
        if exists and recreate:
            conn.execute(f'DROP DATABASE "{database}" WITH (FORCE)')
            exists = None
        if not exists:
            conn.execute(f'CREATE DATABASE "{database}"')
        return not exists


def drop_database(database: str = BENCH_DATABASE) -> None:
    with psycopg_connect("postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


def setup_django(database: str = BENCH_DATABASE, *, migrate: bool = True, **environment) -> None:
    """Point Django at the benchmark database, set it up and apply the migrations."""
    os.environ["DATABASE_URL"] = database_url(database)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "molam_offline.settings")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    os.environ.update(environment)
    sys.path.insert(0, str(BASE_DIR))

    import django

    django.setup()
    if migrate:
        from django.core.management import call_command

        call_command("migrate", verbosity=0)


def machine() -> dict:
    """Describe the machine and the moment: CPU, cores, memory, load, PostgreSQL, commit."""
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass

    import psutil

    with psycopg_connect("postgres") as conn:
        pg_version = conn.execute("SHOW server_version").fetchone()[0]
        synchronous_commit = conn.execute("SHOW synchronous_commit").fetchone()[0]
        fsync = conn.execute("SHOW fsync").fetchone()[0]

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=BASE_DIR, capture_output=True,
                            text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=BASE_DIR,
                           capture_output=True, text=True).stdout.strip()
    return {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": commit + ("+uncommitted" if dirty else ""),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "load_average": " ".join(f"{value:.2f}" for value in os.getloadavg()),
        "python": platform.python_version(),
        "postgresql": f"{pg_version} (fsync={fsync}, synchronous_commit={synchronous_commit})",
    }


def print_machine(facts: dict) -> None:
    print("Machine:")
    for name, value in facts.items():
        print(f"  {name:<14} {value}")


def percentile(values: list[float], fraction: float) -> float:
    """Return the `fraction` percentile (0..1) by the nearest-rank method."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, int(round(fraction * len(ordered) + 0.5)) - 1))
    return ordered[rank]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def stop_servers(servers: list, redis_process, work_dir: Path) -> None:
    """Stop a benchmark's servers (SIGTERM) and its Redis, and remove its files."""
    for process in servers:
        if process is not None:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)
    redis_process.terminate()
    redis_process.wait(timeout=10)
    shutil.rmtree(work_dir, ignore_errors=True)


def clean_up(servers: list, redis_process, work_dir: Path, *, keep: bool) -> None:
    """Stop a benchmark's servers, close Django's connections and drop its database unless `keep`."""
    stop_servers(servers, redis_process, work_dir)

    from django.db import connections

    connections.close_all()
    if not keep:
        drop_database()


class RssSampler(threading.Thread):
    """Sample the resident set size of processes and of their children every 50 ms; keep the peaks in MB.

    `peaks[i]` is the peak of the i-th process, `children_peaks[i]` the highest peak of
    any one of its children, such as a gunicorn or Celery pool worker.
    """

    def __init__(self, pids: list[int]):
        super().__init__(daemon=True)
        import psutil

        self.processes = [psutil.Process(pid) for pid in pids]
        self.peaks = [0.0] * len(pids)
        self.children_peaks = [0.0] * len(pids)
        self.running = True

    def run(self):
        import psutil

        while self.running:
            for index, process in enumerate(self.processes):
                try:
                    self.peaks[index] = max(self.peaks[index], process.memory_info().rss / 2**20)
                    for child in process.children():
                        self.children_peaks[index] = max(self.children_peaks[index], child.memory_info().rss / 2**20)
                except psutil.Error:
                    pass  # The process or a child exited between two samples.
            time.sleep(0.05)

    def stop(self):
        self.running = False
        self.join()
