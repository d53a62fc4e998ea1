"""Admin and API list pages at scale: server time and query count with 10 million transactions.

The loader fills the database `molam_offline_bench_lists` with COPY: devices, bundles of
100 transactions each, the transactions, and two audit rows per bundle. It loads in
chunks that commit one by one and records its progress, so an interrupted load resumes
where it stopped, and a finished load is reused by the next run. The database is dropped
at the end unless --keep is given.

Each page is requested through the Django test client as a logged-in superuser, in this
process, with the database on the same machine. Server time is the wall time of the
request; the query count comes from CaptureQueriesContext.

    .venv/bin/python -m bench.admin_lists --keep          # load once (minutes), measure
    .venv/bin/python -m bench.admin_lists --keep          # measure again, no reload
    .venv/bin/python -m bench.admin_lists                 # measure, then drop the data
"""

import argparse
import sys
import time
from datetime import datetime, timedelta, timezone

from bench.common import create_database, drop_database, machine, median, print_machine, psycopg_connect, setup_django

DATABASE = "molam_offline_bench_lists"
TRANSACTIONS_PER_BUNDLE = 100
BUNDLES_PER_CHUNK = 10_000
COUNTRIES = ["SN", "CI", "ML", "BF", "GN", "NE", "TG", "BJ"]
START = datetime(2026, 9, 1, tzinfo=timezone.utc)

PAGES = [
    ("bundle admin", "/admin/bundles/bundle/"),
    ("bundle admin, status filter", "/admin/bundles/bundle/?status__exact=quarantined"),
    ("transaction admin", "/admin/bundles/transaction/"),
    ("transaction admin, status filter", "/admin/bundles/transaction/?status__exact=rejected"),
    ("transaction admin, search", "/admin/bundles/transaction/?q=%2B221770001234"),
    ("device admin", "/admin/devices/device/"),
    ("device admin, country filter", "/admin/devices/device/?country__exact=SN"),
    ("audit log admin", "/admin/audit/auditlog/"),
    ("audit log admin, action filter", "/admin/audit/auditlog/?action__exact=bundle_accepted"),
    ("API device list", "/offline/devices"),
    ("API device list, country filter", "/offline/devices?country=SN"),
]


def parse_arguments(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--transactions", type=int, default=10_000_000,
                        help="transactions to load (default: 10,000,000)")
    parser.add_argument("--devices", type=int, default=10_000, help="devices to load (default: 10,000)")
    parser.add_argument("--repeat", type=int, default=5, help="requests per page; the median is shown (default: 5)")
    parser.add_argument("--keep", action="store_true", help="keep the loaded database for the next run")
    return parser.parse_args(argv)


# Loader ------------------------------------------------------------------------------

def load(transactions: int, devices: int) -> None:
    bundles = transactions // TRANSACTIONS_PER_BUNDLE
    with psycopg_connect(DATABASE) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS bench_load_progress (name text PRIMARY KEY, done bigint NOT NULL)")
        conn.commit()

        if _progress(conn, "devices") < devices:
            _load_devices(conn, devices)
        loaded = _progress(conn, "bundles")
        started = time.monotonic()
        while loaded < bundles:
            end = min(bundles, loaded + BUNDLES_PER_CHUNK)
            _load_bundles(conn, loaded, end, devices)
            loaded = end
            print(f"  loaded {loaded * TRANSACTIONS_PER_BUNDLE:,} of {transactions:,} transactions "
                  f"({time.monotonic() - started:.0f} s)", flush=True)
        if _progress(conn, "analyzed") < bundles:
            conn.execute("ANALYZE")
            _set_progress(conn, "analyzed", bundles)
            conn.commit()


def _progress(conn, name: str) -> int:
    row = conn.execute("SELECT done FROM bench_load_progress WHERE name = %s", [name]).fetchone()
    return row[0] if row else 0


def _set_progress(conn, name: str, done: int) -> None:
    conn.execute("INSERT INTO bench_load_progress (name, done) VALUES (%s, %s) "
                 "ON CONFLICT (name) DO UPDATE SET done = EXCLUDED.done", [name, done])


def _load_devices(conn, count: int) -> None:
    from devices.keys import generate_private_key, public_key_pem

    pem = public_key_pem(generate_private_key("Ed25519"))
    conn.execute("DELETE FROM offline_devices")
    with conn.cursor().copy("COPY offline_devices (device_id, tenant_type, tenant_id, country, pubkey_pem, key_alg, "
                            "key_fingerprint, status, last_seen_at) FROM STDIN") as copy:
        for index in range(count):
            status = "blocked" if index % 97 == 0 else "active"
            copy.write_row((device_name(index), "merchant" if index % 3 else "agent", f"tenant_{index:06d}",
                            COUNTRIES[index % len(COUNTRIES)], pem, "Ed25519", "0" * 64, status,
                            START + timedelta(minutes=index)))
    _set_progress(conn, "devices", count)
    conn.commit()


def device_name(index: int) -> str:
    return f"DEV_{index:06d}"


def _load_bundles(conn, first: int, end: int, devices: int) -> None:
    """COPY bundles [first, end), their transactions and audit rows in one transaction."""
    bundle_lines, transaction_lines, audit_lines = [], [], []
    for number in range(first, end):
        device_index = number % devices
        device = device_name(device_index)
        country = COUNTRIES[device_index % len(COUNTRIES)]
        bundle_id = f"bundle_{number:09d}"
        created = (START + timedelta(seconds=number * 60)).isoformat()
        status, reason_code, tx_status = "accepted", "", "pending"
        if number % 50 == 0:
            status, reason_code, tx_status = "rejected", "clock_skew", "rejected"
        elif number % 70 == 0:
            status, reason_code = "quarantined", "high_fraud_score"
        payload = ('{"bundle_id": "%s", "device_id": "%s", "sequence": %d, "transactions": []}'
                   % (bundle_id, device, number // devices + 1))
        bundle_lines.append(
            f"{bundle_id}\t{device}\t{country}\t{number // devices + 1}\t{status}\t{reason_code}\t{created}\t"
            f"{created}\tEd25519\t{'A' * 88}\t{number:064x}\t{payload}\t{TRANSACTIONS_PER_BUNDLE}\t"
            f"{1500 * TRANSACTIONS_PER_BUNDLE}\tXOF\t{created}\t{created}\t{created}\n")
        for position in range(TRANSACTIONS_PER_BUNDLE):
            serial = number * TRANSACTIONS_PER_BUNDLE + position
            transaction_lines.append(
                f"{bundle_id}\t{device}\t{position}\ttx-{serial:010d}\tp2p\t1500\tXOF\t"
                f"+22177{serial % 10_000_000:07d}\t+22178{(serial * 7) % 10_000_000:07d}\t{created}\t"
                f"{tx_status}\t{created}\n")
        audit_lines.append(f"{bundle_id}\t{device}\tdevice:{device}\tbundle_received\t{country}\t{created}\n")
        if status != "rejected":
            audit_lines.append(f"{bundle_id}\t{device}\tsystem\tbundle_{status}\t{country}\t{created}\n")

    cursor = conn.cursor()
    with cursor.copy("COPY offline_tx_bundles (bundle_id, device_id, country, sequence, status, reason_code, "
                     "device_created_at, device_sent_at, signature_alg, signature_value, content_hash, payload, "
                     "tx_count, total_amount, currency, created_at, updated_at, last_pushed_at) FROM STDIN") as copy:
        copy.write("".join(bundle_lines))
    with cursor.copy("COPY offline_transactions (bundle_id, device_id, position, local_id, type, amount, currency, "
                     "sender, receiver, initiated_at, status, created_at) FROM STDIN") as copy:
        for start in range(0, len(transaction_lines), 10_000):
            copy.write("".join(transaction_lines[start:start + 10_000]))
    with cursor.copy("COPY offline_audit_logs (bundle_id, device_id, actor, action, country, created_at) "
                     "FROM STDIN") as copy:
        copy.write("".join(audit_lines))
    _set_progress(conn, "bundles", end)
    conn.commit()


# Measurement -------------------------------------------------------------------------

def measure(repeat: int) -> list[dict]:
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    user = get_user_model().objects.filter(username="bench").first()
    if user is None:
        user = get_user_model().objects.create_superuser("bench", "bench@molam.test", "a-long-bench-password")
    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(user)

    rows = []
    for label, url in PAGES:
        client.get(url)  # Warm the caches of this process and of PostgreSQL.
        timings, query_counts = [], []
        for _ in range(repeat):
            with CaptureQueriesContext(connection) as queries:
                started = time.perf_counter()
                response = client.get(url)
                timings.append((time.perf_counter() - started) * 1000)
            if response.status_code != 200:
                raise RuntimeError(f"GET {url} returned {response.status_code}")
            query_counts.append(len(queries))
        slowest = max(queries.captured_queries, key=lambda query: float(query["time"]))
        rows.append({"page": label, "url": url, "median_ms": median(timings), "max_ms": max(timings),
                     "queries": max(query_counts), "slowest_query_ms": float(slowest["time"]) * 1000,
                     "slowest_query": slowest["sql"][:160]})
    return rows


def measure_page_size_growth() -> list[tuple[str, int, int]]:
    """Return the query count of each admin changelist at 20 and at 200 rows per page."""
    from django.contrib import admin
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from audit.models import AuditLog
    from bundles.models import Bundle, Transaction
    from devices.models import Device

    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(get_user_model().objects.get(username="bench"))
    growth = []
    for model, url in [(Bundle, "/admin/bundles/bundle/"), (Transaction, "/admin/bundles/transaction/"),
                       (Device, "/admin/devices/device/"), (AuditLog, "/admin/audit/auditlog/")]:
        model_admin = admin.site._registry[model]
        original = model_admin.list_per_page
        counts = []
        try:
            for per_page in (20, 200):
                model_admin.list_per_page = per_page
                with CaptureQueriesContext(connection) as queries:
                    client.get(url)
                counts.append(len(queries))
        finally:
            model_admin.list_per_page = original
        growth.append((model._meta.verbose_name_plural, counts[0], counts[1]))
    return growth


def print_rows(rows: list[dict]) -> None:
    print(f"\n{'page':<36} {'median ms':>10} {'max ms':>8} {'queries':>8} {'slowest query ms':>17}")
    for row in rows:
        print(f"{row['page']:<36} {row['median_ms']:>10.1f} {row['max_ms']:>8.1f} {row['queries']:>8} "
              f"{row['slowest_query_ms']:>17.1f}")
    print("\nSlowest query of each page:")
    for row in rows:
        print(f"  {row['page']}: {row['slowest_query']}")


def main(argv=None) -> int:
    arguments = parse_arguments(argv)
    try:
        create_database(DATABASE, recreate=False)
        setup_django(DATABASE)
        print_machine(machine())

        print(f"\nLoading {arguments.transactions:,} transactions with COPY (skipped if already loaded)...",
              flush=True)
        started = time.monotonic()
        load(arguments.transactions, arguments.devices)
        print(f"Load step took {time.monotonic() - started:.0f} s")
        with psycopg_connect(DATABASE) as conn:
            for table in ("offline_devices", "offline_tx_bundles", "offline_transactions", "offline_audit_logs"):
                estimate = conn.execute("SELECT reltuples::bigint FROM pg_class WHERE relname = %s",
                                        [table]).fetchone()[0]
                print(f"  {table:<22} about {estimate:,} rows")

        rows = measure(arguments.repeat)
        print_rows(rows)
        print("\nQuery count at 20 and at 200 rows per page:")
        for name, small, large in measure_page_size_growth():
            print(f"  {name:<16} {small:>3} {large:>3}")
    finally:
        from django.db import connections

        connections.close_all()
        if not arguments.keep:
            drop_database(DATABASE)
    return 0


if __name__ == "__main__":
    sys.exit(main())
