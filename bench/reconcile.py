"""Reconciliation throughput: transactions posted per second by `manage.py reconcile`.

For each size the loader fills a template database with COPY: accepted bundles of 100
accepted transactions, one pending `offline_sync_queue` row per bundle, and the ledger
accounts of every sender and receiver with opening balances that cover all payments.
Each run starts from a fresh copy of that template (CREATE DATABASE ... TEMPLATE), so
every run posts the same queue:

- **1 worker**: one `manage.py reconcile --once` process.
- **2 workers**: two such processes started at once on the same queue.
- **bare SQL**: a baseline without Django in this process, with psycopg 3. It claims the
  same batches with FOR UPDATE SKIP LOCKED and, in one database transaction per bundle,
  locks the bundle, queue row and accounts in the worker's order, inserts the same journal
  entries with one INSERT ... SELECT FROM unnest, writes the balances, marks the
  transactions posted, completes the queue row and bundle and inserts the audit row.
- **Celery**: one Celery worker with two pool processes on a local Redis, sent
  `reconcile_sync_queue` tasks as beat sends them in production. Its row gives the peak
  RSS of a pool process, and the run prints that of the main process.

Throughput is posted transactions divided by the posting window: from the first journal
entry's `posted_at` to the last queue row's `processed_at`, so Django's start-up is not
counted. The wall time of the processes, start-up included, is printed too. After each run
the bench checks that every transaction was posted once and that the balances match.

    .venv/bin/python -m bench.reconcile                   # 10,000 and 100,000 transactions
    .venv/bin/python -m bench.reconcile --sizes 1000000   # 1,000,000 (long)
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from bench.common import (BASE_DIR, RssSampler, create_database, database_url, drop_database, machine,
                          print_machine, psycopg_connect, stop_servers)

TEMPLATE_DATABASE = "molam_offline_bench_reconcile_template"
DATABASE = "molam_offline_bench_reconcile"
TRANSACTIONS_PER_BUNDLE = 100
BUNDLES_PER_COPY = 1_000
DEVICES = 1_000
AMOUNT = 1500
START = datetime(2026, 9, 1, tzinfo=timezone.utc)
TARGET_RATIO = 0.5


def parse_arguments(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000],
                        help="queued transactions per measurement (default: 10000 100000)")
    parser.add_argument("--accounts", type=int, default=100_000,
                        help="wallets that senders and receivers are drawn from (default: 100,000)")
    parser.add_argument("--batch-size", type=int, default=50,
                        help="queue rows claimed per batch by the workers and the baseline (default: 50)")
    parser.add_argument("--keep", action="store_true", help="keep the last run's database for inspection")
    return parser.parse_args(argv)


# Loader ------------------------------------------------------------------------------

def prepare_template() -> None:
    """Create the template database and apply the migrations in a separate process."""
    create_database(TEMPLATE_DATABASE, recreate=True)
    subprocess.run([sys.executable, "manage.py", "migrate", "--verbosity", "0"], cwd=BASE_DIR, check=True,
                   env=process_environment(TEMPLATE_DATABASE))


def process_environment(database: str) -> dict:
    return {**os.environ, "DATABASE_URL": database_url(database), "MOLAM_QUICKSTART": "1", "LOG_LEVEL": "WARNING"}


def wallet(index: int) -> str:
    return f"+22177{index:07d}"


def load(transactions: int, accounts: int) -> None:
    """Create a migrated template database with `transactions` queued transactions and their accounts."""
    prepare_template()
    bundles = transactions // TRANSACTIONS_PER_BUNDLE
    with psycopg_connect(TEMPLATE_DATABASE) as conn:
        # Every sender gets enough to pay all its payments, so no payment fails for funds.
        sent = [0] * accounts
        for serial in range(bundles * TRANSACTIONS_PER_BUNDLE):
            sent[sender_index(serial, accounts)] += AMOUNT
        with conn.cursor().copy("COPY offline_ledger_accounts (identifier, currency, opening_balance, balance) "
                                "FROM STDIN") as copy:
            for index in range(accounts):
                opening = sent[index] + 10_000
                copy.write_row((wallet(index), "XOF", opening, opening))

        for first in range(0, bundles, BUNDLES_PER_COPY):
            copy_bundles(conn, first, min(bundles, first + BUNDLES_PER_COPY), accounts)
        conn.commit()
    with psycopg_connect(TEMPLATE_DATABASE, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")


def sender_index(serial: int, accounts: int) -> int:
    return (serial * 7919) % accounts


def receiver_index(serial: int, accounts: int) -> int:
    return (sender_index(serial, accounts) + 1 + serial % 97) % accounts


def copy_bundles(conn, first: int, end: int, accounts: int) -> None:
    bundle_lines, transaction_lines, queue_lines = [], [], []
    for number in range(first, end):
        device = f"DEV_{number % DEVICES:06d}"
        bundle_id = f"bundle_{number:09d}"
        created = (START + timedelta(seconds=number)).isoformat()
        payload = '{"bundle_id": "%s", "device_id": "%s", "transactions": []}' % (bundle_id, device)
        bundle_lines.append(
            f"{bundle_id}\t{device}\tSN\t{number // DEVICES + 1}\taccepted\tqueued\t{created}\t{created}\t"
            f"Ed25519\t{'A' * 88}\t{number:064x}\t{payload}\t{TRANSACTIONS_PER_BUNDLE}\t"
            f"{AMOUNT * TRANSACTIONS_PER_BUNDLE}\tXOF\t{created}\t{created}\t{created}\n")
        for position in range(TRANSACTIONS_PER_BUNDLE):
            serial = number * TRANSACTIONS_PER_BUNDLE + position
            transaction_lines.append(
                f"{bundle_id}\t{device}\t{position}\ttx-{serial:010d}\tp2p\t{AMOUNT}\tXOF\t"
                f"{wallet(sender_index(serial, accounts))}\t{wallet(receiver_index(serial, accounts))}\t"
                f"{created}\taccepted\t{created}\n")
        queue_lines.append(f"{bundle_id}\t{created}\n")

    cursor = conn.cursor()
    with cursor.copy("COPY offline_tx_bundles (bundle_id, device_id, country, sequence, status, "
                     "reconciliation_status, device_created_at, device_sent_at, signature_alg, signature_value, "
                     "content_hash, payload, tx_count, total_amount, currency, created_at, updated_at, "
                     "last_pushed_at) FROM STDIN") as copy:
        copy.write("".join(bundle_lines))
    with cursor.copy("COPY offline_transactions (bundle_id, device_id, position, local_id, type, amount, currency, "
                     "sender, receiver, initiated_at, status, created_at) FROM STDIN") as copy:
        for start in range(0, len(transaction_lines), 10_000):
            copy.write("".join(transaction_lines[start:start + 10_000]))
    with cursor.copy("COPY offline_sync_queue (bundle_id, created_at) FROM STDIN") as copy:
        copy.write("".join(queue_lines))


def fresh_copy() -> None:
    """Recreate the run database as a copy of the loaded template."""
    drop_database(DATABASE)
    with psycopg_connect("postgres", autocommit=True) as conn:
        # FILE_COPY copies the files instead of writing every page to the WAL: faster for large templates.
        conn.execute(f'CREATE DATABASE "{DATABASE}" TEMPLATE "{TEMPLATE_DATABASE}" STRATEGY FILE_COPY')


# Reconcile processes -----------------------------------------------------------------

def run_workers(count: int, batch_size: int) -> dict:
    """Start `count` reconcile processes at once on the fresh copy and wait for all of them."""
    environment = process_environment(DATABASE)
    started = time.monotonic()
    processes = [subprocess.Popen([sys.executable, "manage.py", "reconcile", "--once", "--batch-size",
                                   str(batch_size), "--worker-name", f"bench-{index}"],
                                  cwd=BASE_DIR, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True)
                 for index in range(count)]
    sampler = RssSampler([process.pid for process in processes])
    sampler.start()
    outputs = [process.communicate() for process in processes]
    wall = time.monotonic() - started
    sampler.stop()

    for process, (stdout, stderr) in zip(processes, outputs):
        if process.returncode != 0:
            raise RuntimeError(f"reconcile exited with {process.returncode}: {stdout}\n{stderr[-2000:]}")
    return {"wall_s": wall, "peak_rss_mb": max(sampler.peaks), "summaries": [stdout.strip() for stdout, _ in outputs]}


def run_celery_worker(batch_size: int, concurrency: int = 2) -> dict:
    """Post the queue with reconcile_sync_queue tasks on one Celery worker, as beat sends them in production.

    The worker runs `concurrency` pool processes, as deploy/k8s/worker.yaml does. Each task
    posts at most MAX_BATCHES_PER_TICK batches, so enough tasks are sent to drain the queue,
    plus one per pool process that finds it empty.
    """
    from celery import Celery

    from bench.ingest import start_redis
    from bench.validation_latency import start_celery_worker
    from reconciliation.tasks import MAX_BATCHES_PER_TICK

    work_dir = Path(tempfile.mkdtemp(prefix="molam-bench-reconcile-"))
    redis_process, broker_url = start_redis(work_dir)
    worker = None
    try:
        with psycopg_connect(DATABASE) as conn:
            bundles = conn.execute("SELECT count(*) FROM offline_sync_queue WHERE status = 'pending'").fetchone()[0]
        started = time.monotonic()
        worker = start_celery_worker(broker_url, work_dir / "celery.log", concurrency, database=DATABASE,
                                     RECONCILE_BATCH_SIZE=str(batch_size))
        sampler = RssSampler([worker.pid])
        sampler.start()

        app = Celery(broker=broker_url)
        tasks = -(-bundles // (MAX_BATCHES_PER_TICK * batch_size)) + concurrency
        for _ in range(tasks):
            app.send_task("reconciliation.reconcile_sync_queue")
        wait_until_posted(timeout=3600)
        wall = time.monotonic() - started
        sampler.stop()
    finally:
        stop_servers([worker], redis_process, work_dir)
    return {"wall_s": wall, "peak_rss_mb": max(sampler.children_peaks), "main_rss_mb": sampler.peaks[0]}


def wait_until_posted(*, timeout: float) -> None:
    """Wait until no queue row is left to post."""
    deadline = time.monotonic() + timeout
    with psycopg_connect(DATABASE, autocommit=True) as conn:
        while conn.execute("SELECT count(*) FROM offline_sync_queue WHERE status <> 'done'").fetchone()[0]:
            if time.monotonic() > deadline:
                raise TimeoutError(f"queue rows still open after {timeout:.0f} s; see the Celery worker log")
            time.sleep(0.2)


# Bare SQL baseline -------------------------------------------------------------------

CLAIM = """
SELECT id, bundle_id FROM offline_sync_queue
WHERE status IN ('pending', 'failed') AND (available_at IS NULL OR available_at <= now())
ORDER BY priority, created_at, id LIMIT %s FOR UPDATE SKIP LOCKED
"""

LOCK_ACCOUNTS = """
SELECT a.id, a.identifier, a.balance FROM offline_ledger_accounts a
JOIN unnest(%s::text[]) AS k(identifier) ON a.identifier = k.identifier
WHERE a.currency = %s ORDER BY a.id FOR UPDATE OF a
"""

INSERT_ENTRIES = """
INSERT INTO offline_ledger_entries (device_id, local_id, transaction_id, bundle_id, debit_account_id,
                                    credit_account_id, amount, currency, posted_at, posted_by)
SELECT e.device_id, e.local_id, e.transaction_id, %s, e.debit, e.credit, e.amount, e.currency, now(), %s
FROM unnest(%s::text[], %s::text[], %s::bigint[], %s::bigint[], %s::bigint[], %s::numeric[], %s::text[])
     AS e(device_id, local_id, transaction_id, debit, credit, amount, currency)
ON CONFLICT (device_id, local_id) DO NOTHING RETURNING local_id
"""


def run_baseline(batch_size: int) -> dict:
    """Post the whole queue with plain SQL, one database transaction per bundle; return the wall time."""
    worker = "bench-bare"
    with psycopg_connect(DATABASE) as conn:
        started = time.monotonic()
        while True:
            with conn.transaction():
                batch = conn.execute(CLAIM, [batch_size]).fetchall()
                conn.execute("UPDATE offline_sync_queue SET status = 'processing', locked_by = %s, "
                             "lease_expires_at = now() + interval '300 seconds', attempts = attempts + 1, "
                             "updated_at = now() WHERE id = ANY(%s)", [worker, [row[0] for row in batch]])
            if not batch:
                break
            for queue_id, bundle_id in batch:
                with conn.transaction():
                    post_bundle_bare(conn, queue_id, bundle_id, worker)
        wall = time.monotonic() - started
    return {"wall_s": wall}


def post_bundle_bare(conn, queue_id: int, bundle_id: str, worker: str) -> None:
    device_id, country, status = conn.execute(
        "SELECT device_id, country, status FROM offline_tx_bundles WHERE bundle_id = %s FOR UPDATE",
        [bundle_id]).fetchone()
    queue_status, locked_by = conn.execute(
        "SELECT status, locked_by FROM offline_sync_queue WHERE id = %s FOR UPDATE", [queue_id]).fetchone()
    if status != "accepted" or queue_status != "processing" or locked_by != worker:
        raise RuntimeError(f"bundle {bundle_id} is not claimable by the baseline ({status}, {queue_status})")

    transactions = conn.execute(
        "SELECT id, local_id, amount, currency, sender, receiver FROM offline_transactions "
        "WHERE bundle_id = %s AND status IN ('accepted', 'pending') ORDER BY position", [bundle_id]).fetchall()
    currency = transactions[0][3]
    identifiers = sorted({tx[4] for tx in transactions} | {tx[5] for tx in transactions})
    accounts = {identifier: [account_id, balance]
                for account_id, identifier, balance in conn.execute(LOCK_ACCOUNTS, [identifiers, currency])}

    entries = []
    for tx_id, local_id, amount, tx_currency, sender, receiver in transactions:
        if accounts[sender][1] < amount:
            raise RuntimeError(f"the bench data must fund every payment, {sender} cannot pay {amount}")
        accounts[sender][1] -= amount
        accounts[receiver][1] += amount
        entries.append((local_id, tx_id, accounts[sender][0], accounts[receiver][0], amount, tx_currency))

    inserted = conn.execute(INSERT_ENTRIES, [
        bundle_id, worker, [device_id] * len(entries), [entry[0] for entry in entries],
        [entry[1] for entry in entries], [entry[2] for entry in entries], [entry[3] for entry in entries],
        [entry[4] for entry in entries], [entry[5] for entry in entries]]).fetchall()
    if len(inserted) != len(entries):
        raise RuntimeError(f"bundle {bundle_id}: {len(entries) - len(inserted)} payments were already posted")

    conn.execute("UPDATE offline_ledger_accounts a SET balance = v.balance, updated_at = now() "
                 "FROM unnest(%s::bigint[], %s::numeric[]) AS v(id, balance) WHERE a.id = v.id",
                 [[account[0] for account in accounts.values()], [account[1] for account in accounts.values()]])
    conn.execute("UPDATE offline_transactions SET status = 'posted', posted_at = now() WHERE id = ANY(%s)",
                 [[tx[0] for tx in transactions]])
    conn.execute("UPDATE offline_tx_bundles SET reconciliation_status = 'posted', reconciled_at = now(), "
                 "updated_at = now() WHERE bundle_id = %s", [bundle_id])
    outcome = {"posted": len(entries), "failed": 0, "skipped": 0, "reconciliation_status": "posted",
               "transactions": {tx[1]: "posted" for tx in transactions}}
    conn.execute("UPDATE offline_sync_queue SET status = 'done', outcome = %s, processed_at = clock_timestamp(), "
                 "locked_by = '', lease_expires_at = NULL, last_error = '', updated_at = now() WHERE id = %s",
                 [json.dumps(outcome), queue_id])
    conn.execute("INSERT INTO offline_audit_logs (action, actor, bundle_id, device_id, country, details, old_values, "
                 "new_values, reason) VALUES ('reconciled', %s, %s, %s, %s, %s, %s, %s, '')",
                 [f"worker:{worker}", bundle_id, device_id, country,
                  json.dumps({"queue_item_id": queue_id, "attempt": 1, "posted": len(entries), "failed": {},
                              "skipped": 0}),
                  json.dumps({"reconciliation_status": "queued"}), json.dumps({"reconciliation_status": "posted"})])


# Checks and figures ------------------------------------------------------------------

def check_and_measure(transactions: int) -> float:
    """Check that every transaction was posted once and balances match; return the posting window in seconds."""
    with psycopg_connect(DATABASE) as conn:
        entries, distinct = conn.execute(
            "SELECT count(*), count(DISTINCT (device_id, local_id)) FROM offline_ledger_entries").fetchone()
        posted = conn.execute("SELECT count(*) FROM offline_transactions WHERE status = 'posted'").fetchone()[0]
        open_rows = conn.execute("SELECT count(*) FROM offline_sync_queue WHERE status <> 'done'").fetchone()[0]
        audit = conn.execute("SELECT count(*) FROM offline_audit_logs WHERE action = 'reconciled'").fetchone()[0]
        wrong_balances = conn.execute("""
            SELECT count(*) FROM offline_ledger_accounts a
            LEFT JOIN (SELECT debit_account_id AS id, sum(amount) AS total FROM offline_ledger_entries
                       GROUP BY 1) d ON d.id = a.id
            LEFT JOIN (SELECT credit_account_id AS id, sum(amount) AS total FROM offline_ledger_entries
                       GROUP BY 1) c ON c.id = a.id
            WHERE a.balance <> a.opening_balance + coalesce(c.total, 0) - coalesce(d.total, 0)""").fetchone()[0]
        first, last = conn.execute("SELECT (SELECT min(posted_at) FROM offline_ledger_entries), "
                                   "(SELECT max(processed_at) FROM offline_sync_queue)").fetchone()

    bundles = transactions // TRANSACTIONS_PER_BUNDLE
    problems = []
    if entries != transactions or distinct != transactions or posted != transactions:
        problems.append(f"{entries} entries ({distinct} distinct) and {posted} posted transactions, "
                        f"expected {transactions}")
    if open_rows:
        problems.append(f"{open_rows} queue rows are not done")
    if audit != bundles:
        problems.append(f"{audit} reconciled audit rows, expected {bundles}")
    if wrong_balances:
        problems.append(f"{wrong_balances} accounts do not match their journal entries")
    if problems:
        raise RuntimeError("; ".join(problems))
    return (last - first).total_seconds()


def measure_size(transactions: int, accounts: int, batch_size: int) -> list[dict]:
    print(f"\nLoading {transactions:,} queued transactions with COPY...", flush=True)
    started = time.monotonic()
    load(transactions, accounts)
    print(f"  loaded in {time.monotonic() - started:.1f} s", flush=True)

    rows = []
    for label, run in [("1 worker", lambda: run_workers(1, batch_size)),
                       ("2 workers", lambda: run_workers(2, batch_size)),
                       ("bare SQL", lambda: run_baseline(batch_size)),
                       ("Celery", lambda: run_celery_worker(batch_size))]:
        fresh_copy()
        result = run()
        window = check_and_measure(transactions)
        row = {"size": transactions, "path": label, "window_s": window, "tx_per_s": transactions / window,
               **result}
        rows.append(row)
        rss = f", peak RSS {row['peak_rss_mb']:.0f} MB" if "peak_rss_mb" in row else ""
        if "main_rss_mb" in row:
            rss += f" per pool process, {row['main_rss_mb']:.0f} MB the main process"
        print(f"  {label:<10} {row['tx_per_s']:>9,.0f} tx/s (posting window {window:.1f} s, "
              f"wall {row['wall_s']:.1f} s{rss})", flush=True)
    return rows


def print_results(rows: list[dict]) -> None:
    print(f"\n{'transactions':>12} {'path':<10} {'window s':>9} {'wall s':>8} {'tx/s':>9} {'peak RSS MB':>12}")
    for row in rows:
        rss = f"{row['peak_rss_mb']:.0f}" if "peak_rss_mb" in row else "-"
        print(f"{row['size']:>12,} {row['path']:<10} {row['window_s']:>9.1f} {row['wall_s']:>8.1f} "
              f"{row['tx_per_s']:>9,.0f} {rss:>12}")

    print(f"\nTwo workers against the bare SQL baseline (target: at least {TARGET_RATIO:.0%}):")
    by_key = {(row["size"], row["path"]): row for row in rows}
    for size in sorted({row["size"] for row in rows}):
        ratio = by_key[(size, "2 workers")]["tx_per_s"] / by_key[(size, "bare SQL")]["tx_per_s"]
        print(f"  {size:>10,} transactions: {ratio:.1%} ({'met' if ratio >= TARGET_RATIO else 'NOT met'})")

    sizes = sorted({row["size"] for row in rows})
    if len(sizes) > 1:
        print("\nGrowth of the posting window from the smallest size (linear cost gives the size ratio):")
        for path in ("1 worker", "2 workers", "bare SQL"):
            base = by_key[(sizes[0], path)]["window_s"]
            growth = ", ".join(f"x{by_key[(size, path)]['window_s'] / base:.1f} for x{size // sizes[0]}"
                               for size in sizes[1:])
            print(f"  {path:<10} {growth}")


def main(argv=None) -> int:
    arguments = parse_arguments(argv)
    for size in arguments.sizes:
        if size < TRANSACTIONS_PER_BUNDLE or size % TRANSACTIONS_PER_BUNDLE:
            raise SystemExit(f"--sizes: {size} is not a positive multiple of {TRANSACTIONS_PER_BUNDLE}")
    try:
        print_machine(machine())
        print(f"Bundles of {TRANSACTIONS_PER_BUNDLE} transactions, batches of {arguments.batch_size} bundles, "
              f"{arguments.accounts:,} wallets")
        rows = []
        for size in arguments.sizes:
            rows.extend(measure_size(size, arguments.accounts, arguments.batch_size))
        print_results(rows)
    finally:
        if not arguments.keep:
            drop_database(DATABASE)
        drop_database(TEMPLATE_DATABASE)
    return 0


if __name__ == "__main__":
    sys.exit(main())
