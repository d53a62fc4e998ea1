"""Benchmark of fraud scoring cost per transaction: in memory, and through PostgreSQL.

Run: MOLAM_QUICKSTART=1 .venv/bin/python bench/sira_bench.py [--seed 7] [--db-bundles 300]

1. In memory: the rule scorer on the default synthetic mix (features and rules only).
2. Database path: the synthetic traffic is inserted into PostgreSQL inside a transaction
   that is rolled back at the end; the last --db-bundles bundles then go through
   load_context (two indexed queries) and the scorer, as the validation task runs them.
It prints the cost per transaction, the machine it ran on and the load average, because
wall-clock numbers on a shared machine grow with the load.
"""

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "molam_offline.settings")

import django  # noqa: E402

django.setup()

from django.db import connection, transaction  # noqa: E402

from bench.common import machine, print_machine  # noqa: E402
from bundles.models import Bundle, BundleStatus, Transaction  # noqa: E402
from bundles.sira.evaluation import evaluate  # noqa: E402
from bundles.sira.history import load_context  # noqa: E402
from bundles.sira.scorer import RuleScorer  # noqa: E402
from devices.models import Device  # noqa: E402
from bundles.sira.synthetic import generate_traffic  # noqa: E402
from policies.models import Policy  # noqa: E402


def backend_cpu_seconds() -> float | None:
    """Return the CPU seconds used so far by this connection's PostgreSQL backend, from /proc (Linux, local server)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        pid = cursor.fetchone()[0]
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    # utime and stime are fields 14 and 15 of /proc/PID/stat, in clock ticks.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def insert(traffic) -> list[Bundle]:
    Device.objects.bulk_create([Device(device_id=device.device_id, tenant_type=device.tenant_type,
                                       tenant_id=f"tenant_{device.device_id.lower()}", country="SN",
                                       pubkey_pem="benchmark row, no key", key_alg="Ed25519",
                                       key_registered_at=device.key_registered_at)
                                for device in traffic.devices.values()])
    bundles, rows = [], []
    for synthetic in traffic.bundles:
        bundle = Bundle(bundle_id=f"bench_{synthetic.bundle_id}"[:64], device_id=synthetic.device_id, country="SN",
                        sequence=synthetic.sequence, status=BundleStatus.ACCEPTED,
                        device_created_at=synthetic.sealed_at, device_sent_at=synthetic.arrives_at,
                        signature_alg="Ed25519", signature_value="bench", content_hash="0" * 64, payload={},
                        tx_count=len(synthetic.transactions), currency="XOF")
        bundles.append(bundle)
        for position, tx in enumerate(synthetic.transactions):
            rows.append(Transaction(bundle_id=bundle.bundle_id, device_id=synthetic.device_id, position=position,
                                    local_id=tx.local_id, type=tx.type, amount=tx.amount, currency="XOF",
                                    sender=tx.sender, receiver=tx.receiver, initiated_at=tx.initiated_at,
                                    status="accepted"))
    Bundle.objects.bulk_create(bundles, batch_size=2000)
    Transaction.objects.bulk_create(rows, batch_size=5000)
    return bundles


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=7, help="Seed of the synthetic traffic (default: 7).")
    parser.add_argument("--db-bundles", type=int, default=300,
                        help="Bundles scored through PostgreSQL in part 2 (default: 300).")
    options = parser.parse_args()

    policy = Policy.objects.get(country="SN")
    scorer = RuleScorer()
    traffic = generate_traffic(options.seed)
    print_machine(machine())

    runs = []
    for _ in range(3):
        result = evaluate(traffic, scorer, policy)
        runs.append(result.scoring_seconds / result.transactions)
    print(f"In memory: {result.transactions} transactions in {len(traffic.bundles)} bundles, "
          f"{statistics.median(runs) * 1e6:.0f} microseconds per transaction (median of 3 runs)")

    with transaction.atomic():
        inserted = insert(traffic)
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE offline_transactions")
            cursor.execute("ANALYZE offline_tx_bundles")
        sample = inserted[-options.db_bundles:]
        # The validation task has the bundle's rows already; the scoring cost starts after.
        rows_by_bundle = [list(bundle.transactions.order_by("position")) for bundle in sample]
        count = 0
        server_started = backend_cpu_seconds()
        started, cpu_started = time.perf_counter(), time.process_time()
        for bundle, rows in zip(sample, rows_by_bundle):
            context = load_context(bundle, rows, policy.timezone)
            scorer.score(context, rows, policy)
            count += len(rows)
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
        server_ended = backend_cpu_seconds()
        transaction.set_rollback(True)
    print(f"Through PostgreSQL: {count} transactions in {len(sample)} bundles (two history queries and "
          f"scoring): {elapsed / count * 1e6:.0f} microseconds per transaction wall clock, "
          f"{elapsed / len(sample) * 1e3:.1f} ms per bundle; Python process CPU {cpu / count * 1e6:.0f} "
          f"microseconds per transaction")
    if server_started is not None and server_ended is not None:
        server = server_ended - server_started
        print(f"PostgreSQL backend CPU {server / count * 1e6:.0f} microseconds per transaction; Python and "
              f"PostgreSQL CPU together {(cpu + server) / count * 1e6:.0f} microseconds per transaction")
    print("Load average (1, 5, 15 min) at the end: " + ", ".join(f"{value:.2f}" for value in os.getloadavg()))


if __name__ == "__main__":
    main()
