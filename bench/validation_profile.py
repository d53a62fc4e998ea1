"""Profile of validate_bundle on 100-transaction bundles: wall time, query count, top functions.

Ingests bundles in this process (the validation task is not sent), then validates them one
by one, in two cases:

- rejected: the seeded SN policy allows 50 transactions per device per day, so a
  100-transaction bundle is rejected by the daily limit, as in bench/validation_latency.py;
- scored: the daily limits are raised, so every bundle passes the policy checks and is
  scored. The benchmark bundles share senders across devices, so most of them score high
  enough to be quarantined.

Works in its own database, `molam_offline_bench_profile`, and drops it at the end unless
--keep is given.

    .venv/bin/python -m bench.validation_profile
"""

import argparse
import cProfile
import pstats
import sys
import time

from bench.common import create_database, drop_database, machine, median, print_machine, setup_django
from bench.ingest import build_bodies, build_devices, register_devices

PROFILE_DATABASE = "molam_offline_bench_profile"


def parse_arguments(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=100, help="transactions per bundle (default: 100)")
    parser.add_argument("--bundles", type=int, default=100,
                        help="bundles validated per case, half timed and half profiled (default: 100)")
    parser.add_argument("--top", type=int, default=25, help="functions listed per profile (default: 25)")
    parser.add_argument("--keep", action="store_true", help="keep the profile database afterwards")
    return parser.parse_args(argv)


def ingest(bodies: list[bytes]) -> list[int]:
    from bundles import tasks
    from bundles.services import ingest_bundle
    from bundles.wire import parse_bundle

    enqueued: list[int] = []
    send_task_message, tasks.enqueue_validation = tasks.enqueue_validation, enqueued.append
    try:
        for body in bodies:
            ingest_bundle(parse_bundle(body), source_ip="127.0.0.1")
    finally:
        tasks.enqueue_validation = send_task_message
    return enqueued


def profile_case(label: str, bundle_pks: list[int], top: int) -> None:
    """Validate the first half of `bundle_pks` timed only, then the second half under cProfile."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from bundles.validation import validate_bundle

    half = len(bundle_pks) // 2
    timings, query_counts, statuses = [], [], {}
    for bundle_pk in bundle_pks[:half]:
        with CaptureQueriesContext(connection) as queries:
            started = time.perf_counter()
            status = validate_bundle(bundle_pk)
            timings.append(time.perf_counter() - started)
        query_counts.append(len(queries))
        statuses[status] = statuses.get(status, 0) + 1

    profiled_timings = []
    profiler = cProfile.Profile()
    for bundle_pk in bundle_pks[half:]:
        started = time.perf_counter()
        profiler.enable()
        status = validate_bundle(bundle_pk)
        profiler.disable()
        profiled_timings.append(time.perf_counter() - started)
        statuses[status] = statuses.get(status, 0) + 1

    print(f"\n{label}: {len(bundle_pks)} bundles, outcomes {statuses}")
    print(f"  per validation: median {median(timings) * 1000:.1f} ms, max {max(timings) * 1000:.1f} ms "
          f"({half} bundles); under the profiler: median {median(profiled_timings) * 1000:.1f} ms")
    print(f"  queries per validation: median {median(query_counts):.0f}, max {max(query_counts)}. "
          f"Those of the last timed validation:")
    for query in queries.captured_queries:
        print(f"    {query['time']} s  {query['sql'][:160]}")
    pstats.Stats(profiler).sort_stats("cumulative").print_stats(top)
    print("  by own time:")
    pstats.Stats(profiler).sort_stats("tottime").print_stats(top)


def main(argv=None) -> int:
    arguments = parse_arguments(argv)
    try:
        create_database(PROFILE_DATABASE, recreate=True)
        setup_django(PROFILE_DATABASE)
        print_machine(machine())
        from policies.models import Policy

        identities = build_devices(50)
        register_devices(identities)

        rejected = ingest(build_bodies(identities, size=arguments.size, count=arguments.bundles, label="rejected"))
        profile_case("Rejected by the daily limit", rejected, arguments.top)

        Policy.objects.update(max_offline_per_device_per_day=10**6, max_amount_per_device_per_day=10**12)
        scored = ingest(build_bodies(identities, size=arguments.size, count=arguments.bundles, label="scored"))
        profile_case("Passed the policy checks and scored", scored, arguments.top)
    finally:
        from django.db import connections

        connections.close_all()
        if not arguments.keep:
            drop_database(PROFILE_DATABASE)
    return 0


if __name__ == "__main__":
    sys.exit(main())
