"""Push-to-final-status latency at half the measured ingest capacity.

Starts Redis, gunicorn and one Celery worker on 127.0.0.1 against the benchmark database.
First it measures capacity: 100-transaction bundles pushed back to back by the client
processes, with the worker validating at the same time. Then it pushes at half that rate
on a fixed schedule (open loop, so a slow response does not slow the senders), waits until
every bundle has left `received`, and reports the time from sending the request to the
bundle's validated_at, p50 and p99.

It also prints how fast the worker validated the back-to-back bundles (a backlog), the
outcomes, and the peak resident set size of a gunicorn worker and of the Celery worker's
main and pool processes over the whole run. The seeded policies allow 50 transactions per device per day, so by default every
100-transaction bundle is rejected by the daily limit and is never scored; --scored raises
the limits, so that every bundle goes through fraud scoring as well.

validated_at is set by the worker just before its commit, from the same clock as the
senders (one machine), so the figure leaves out that last commit.

    .venv/bin/python -m bench.validation_latency
    .venv/bin/python -m bench.validation_latency --scored
"""

import argparse
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

from bench.common import BASE_DIR, BENCH_DATABASE, RssSampler, clean_up, create_database, database_url, \
    machine, percentile, print_machine, setup_django
from bench.ingest import (build_bodies, build_devices, free_port, register_devices, run_http, start_gunicorn,
                          start_redis)


def parse_arguments(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=100, help="transactions per bundle (default: 100)")
    parser.add_argument("--capacity-bundles", type=int, default=400,
                        help="bundles pushed back to back to measure capacity (default: 400)")
    parser.add_argument("--seconds", type=float, default=30, help="length of the half-rate run (default: 30)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn worker processes (default: 2)")
    parser.add_argument("--clients", type=int, default=4, help="load-generator processes (default: 4)")
    parser.add_argument("--concurrency", type=int, default=2, help="Celery worker processes (default: 2)")
    parser.add_argument("--capacity", type=float,
                        help="HTTP capacity in bundles/s; the run pushes at half of it instead of half the "
                             "capacity it measures. The back-to-back push still runs first, to warm up and to "
                             "measure the validation throughput")
    parser.add_argument("--scored", action="store_true",
                        help="raise the daily limits of every policy in the benchmark database, so that the bundles "
                             "pass the policy checks and go through fraud scoring. By default the seeded limit of 50 "
                             "transactions per device per day rejects every 100-transaction bundle before scoring")
    parser.add_argument("--keep", action="store_true", help="keep the benchmark database afterwards")
    return parser.parse_args(argv)


def start_celery_worker(broker_url: str, log_path: Path, concurrency: int, *, database: str = BENCH_DATABASE,
                        **settings: str) -> subprocess.Popen:
    """Start a prefork Celery worker on `database`; `settings` are extra environment variables."""
    environment = {**os.environ, "DATABASE_URL": database_url(database), "CELERY_BROKER_URL": broker_url,
                   "MOLAM_QUICKSTART": "1", "LOG_LEVEL": "WARNING", **settings}
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "molam_offline", "worker", "--loglevel", "WARNING", "--pool",
         "prefork", "--concurrency", str(concurrency), "--without-gossip", "--without-mingle"],
        cwd=BASE_DIR, env=environment, stdout=open(log_path, "wb"), stderr=subprocess.STDOUT)


def scheduled_client(port: int, items: list[tuple[str, bytes, float]], start_at: float, results) -> None:
    """Send each body at its scheduled offset from `start_at` (wall clock); report the send times."""
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    headers = {"Content-Type": "application/json"}
    sent = []
    failures = 0
    for bundle_id, body, offset in items:
        delay = start_at + offset - time.time()
        if delay > 0:
            time.sleep(delay)
        sent.append((bundle_id, time.time()))
        connection.request("POST", "/offline/bundles", body=body, headers=headers)
        response = connection.getresponse()
        response.read()
        if response.status != 202:
            failures += 1
    results.put((sent, failures))


def run_half_rate(bodies: list[bytes], *, rate: float, port: int, clients: int) -> dict[str, float]:
    import json

    interval = 1 / rate
    items = [(json.loads(body)["bundle_id"], body, index * interval) for index, body in enumerate(bodies)]
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    start_at = time.time() + 1
    processes = [context.Process(target=scheduled_client, args=(port, items[index::clients], start_at, results))
                 for index in range(clients)]
    for process in processes:
        process.start()
    reports = [results.get(timeout=600) for _ in processes]
    for process in processes:
        process.join()
    if sum(report[1] for report in reports):
        raise RuntimeError("some pushes did not return 202; see the gunicorn output above")
    return {bundle_id: sent_at for report in reports for bundle_id, sent_at in report[0]}


def wait_until_validated(bundle_ids: list[str], timeout: float = 300) -> dict[str, datetime]:
    from bundles.models import Bundle, BundleStatus

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not Bundle.objects.filter(bundle_id__in=bundle_ids, status=BundleStatus.RECEIVED).exists():
            break
        time.sleep(0.2)
    else:
        raise TimeoutError(f"bundles still `received` after {timeout} seconds; see the worker log")
    return dict(Bundle.objects.filter(bundle_id__in=bundle_ids).values_list("bundle_id", "validated_at"))


def print_outcomes(validated: dict[str, datetime]) -> None:
    from django.db.models import Count

    from bundles.models import Bundle

    outcomes = (Bundle.objects.filter(bundle_id__in=list(validated)).values_list("status", "reason_code")
                .annotate(count=Count("id")).order_by("status", "reason_code"))
    print("Outcomes: " + ", ".join(f"{count} {status} {reason}".rstrip() for status, reason, count in outcomes))


def main(argv=None) -> int:
    arguments = parse_arguments(argv)
    work_dir = Path(tempfile.mkdtemp(prefix="molam-bench-latency-"))
    redis_process, broker_url = start_redis(work_dir)
    gunicorn = worker = None
    try:
        create_database(recreate=True)
        setup_django(CELERY_BROKER_URL=broker_url)
        print_machine(machine())
        identities = build_devices(50)
        register_devices(identities)
        if arguments.scored:
            from policies.models import Policy

            Policy.objects.update(max_offline_per_device_per_day=10**6, max_amount_per_device_per_day=10**12)

        port = free_port()
        gunicorn = start_gunicorn(port, workers=arguments.workers, worker_class="sync", broker_url=broker_url)
        worker = start_celery_worker(broker_url, work_dir / "celery.log", arguments.concurrency)
        time.sleep(3)  # Let the worker connect to the broker.
        sampler = RssSampler([gunicorn.pid, worker.pid])
        sampler.start()

        warm_up = build_bodies(identities, size=1, count=8 * arguments.workers, label="warmup")
        run_http(warm_up, port=port, clients=arguments.workers, gunicorn=gunicorn)
        capacity_bodies = build_bodies(identities, size=arguments.size, count=arguments.capacity_bundles,
                                       label="capacity")
        capacity_started = time.time()
        capacity = run_http(capacity_bodies, port=port, clients=arguments.clients, gunicorn=gunicorn)
        rate = (arguments.capacity or capacity["bundles_per_s"]) / 2
        print(f"\nCapacity: {capacity['bundles_per_s']:.1f} bundles/s of {arguments.size} transactions "
              f"(HTTP, with the worker running). Half rate: {rate:.1f} bundles/s for {arguments.seconds:.0f} s"
              f"{' (of the capacity given by --capacity)' if arguments.capacity else ''}.")
        capacity_validated = wait_until_validated(
            [f"b_capacity_{arguments.size}_{index:06d}" for index in range(len(capacity_bodies))])
        drained = max(moment.timestamp() for moment in capacity_validated.values()) - capacity_started
        print(f"Validation throughput with a backlog: {len(capacity_bodies)} bundles pushed back to back were "
              f"validated in {drained:.1f} s, {len(capacity_bodies) / drained:.1f} bundles/s "
              f"({arguments.concurrency} worker processes)")
        print_outcomes(capacity_validated)

        bodies = build_bodies(identities, size=arguments.size, count=max(1, int(rate * arguments.seconds)),
                              label="latency")
        sent = run_half_rate(bodies, rate=rate, port=port, clients=arguments.clients)
        validated = wait_until_validated(list(sent))
        latencies = [validated[bundle_id].timestamp() - sent_at for bundle_id, sent_at in sent.items()]

        first_sent = min(sent.values())
        last_validated = max(moment.timestamp() for moment in validated.values())
        print(f"\nValidation kept up with {len(sent) / (last_validated - first_sent):.1f} bundles/s "
              f"({arguments.concurrency} worker processes)")
        print(f"Push to final status, {len(latencies)} bundles at {rate:.1f} bundles/s: "
              f"p50 {percentile(latencies, 0.5) * 1000:.0f} ms, p99 {percentile(latencies, 0.99) * 1000:.0f} ms, "
              f"max {max(latencies) * 1000:.0f} ms (target: p99 under 1 s)")
        print_outcomes(validated)
        sampler.stop()
        print(f"Peak RSS: gunicorn worker {sampler.children_peaks[0]:.0f} MB; Celery worker main process "
              f"{sampler.peaks[1]:.0f} MB, pool process {sampler.children_peaks[1]:.0f} MB")
        print(f"Load average at the end: {' '.join(f'{value:.2f}' for value in os.getloadavg())}")
    finally:
        clean_up([worker, gunicorn], redis_process, work_dir, keep=arguments.keep)
    return 0


if __name__ == "__main__":
    sys.exit(main())
