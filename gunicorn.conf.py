"""Gunicorn settings, read from ./gunicorn.conf.py by default (the Docker image's command runs from /app).

Environment: GUNICORN_BIND (default 127.0.0.1:8000; the Kubernetes deployment sets
0.0.0.0:8000), WEB_CONCURRENCY (worker processes, default 4), GUNICORN_TIMEOUT (seconds,
default 30), PROMETHEUS_MULTIPROC_DIR (default a fresh folder under the temp folder).
"""

import os
import shutil
import tempfile

bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("WEB_CONCURRENCY", "4"))
worker_class = "sync"
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
graceful_timeout = 30
keepalive = 5
# Recycle workers now and then so a slow leak cannot grow without bound; the jitter
# keeps them from restarting all at once.
max_requests = 2000
max_requests_jitter = 200
accesslog = "-"
errorlog = "-"

# prometheus_client's multiprocess mode: every worker writes its counters to files in
# this folder, and /metrics adds them up. It must be in the environment before a worker
# imports prometheus_client, so it is set here, in the master, before the fork.
metrics_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or os.path.join(
    tempfile.gettempdir(), f"molam-offline-metrics-{os.getpid()}")
os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir


def on_starting(server):
    # Files left by an earlier run with the same folder would be added to this run's counters.
    shutil.rmtree(metrics_dir, ignore_errors=True)
    os.makedirs(metrics_dir, exist_ok=True)
    server.log.info("Prometheus multiprocess folder: %s", metrics_dir)


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
