"""Database lookups that build a bundle's BundleContext: two indexed queries per bundle.

The queries are bounded by time window and row count, so a device or sender with millions
of past transactions reads no more rows than one with a few hundred.
"""

from molam_offline.db import server_binding_cursor

from ..models import Bundle, BundleStatus, Transaction, TransactionStatus
from .features import (DEVICE_HISTORY_LIMIT, DEVICE_LOOKBACK, SENDER_HISTORY_LIMIT, SENDER_LOOKAHEAD, SENDER_LOOKBACK,
                       BundleContext, PastTransaction)

# Plain SQL because this runs for every bundle and the ORM's query compilation cost more
# than the queries themselves. The table names are fixed by the operations runbook.

# The device's key registration, the highest earlier sequence number, whether another
# bundle has this number, and the latest transaction time of the previous bundle that was
# not rejected. The bundle subqueries use the (device_id, sequence) index, the last one
# also the (bundle_id, position) unique index.
FACTS_SQL = """
SELECT d.key_registered_at,
       (SELECT b.sequence FROM offline_tx_bundles b
         WHERE b.device_id = d.device_id AND b.sequence < %(sequence)s AND b.id <> %(bundle_pk)s
         ORDER BY b.sequence DESC LIMIT 1),
       EXISTS (SELECT 1 FROM offline_tx_bundles b
                WHERE b.device_id = d.device_id AND b.sequence = %(sequence)s AND b.id <> %(bundle_pk)s),
       (SELECT max(t.initiated_at) FROM offline_transactions t
         WHERE t.status <> %(rejected_tx)s AND t.bundle_id = (
               SELECT b.bundle_id FROM offline_tx_bundles b
                WHERE b.device_id = d.device_id AND b.sequence < %(sequence)s AND b.id <> %(bundle_pk)s
                  AND b.status <> %(rejected_bundle)s
                ORDER BY b.sequence DESC LIMIT 1))
  FROM offline_devices d
 WHERE d.device_id = %(device_id)s
"""

# The device's recent transactions (the (device_id, initiated_at) index, newest first so
# that the limit keeps the recent ones), then the senders' transactions on other devices
# around the bundle's times (the (sender, initiated_at) index).
HISTORY_SQL = """
(SELECT device_id, local_id, sender, receiver, amount, initiated_at FROM offline_transactions
  WHERE device_id = %(device_id)s AND initiated_at >= %(device_since)s
    AND bundle_id <> %(bundle_id)s AND status <> %(rejected_tx)s
  ORDER BY initiated_at DESC LIMIT %(device_limit)s)
UNION ALL
(SELECT device_id, local_id, sender, receiver, amount, initiated_at FROM offline_transactions
  WHERE sender = ANY(%(senders)s) AND initiated_at >= %(sender_since)s AND initiated_at <= %(sender_until)s
    AND device_id <> %(device_id)s AND status <> %(rejected_tx)s
  ORDER BY initiated_at DESC LIMIT %(sender_limit)s)
"""


def load_context(bundle: Bundle, transactions: list[Transaction], time_zone: str) -> BundleContext:
    """Read the device's and the senders' recent history for a bundle in two queries.

    Transactions of rejected bundles are left out: a forged or refused bundle must not
    shape the history that the device's real bundles are compared with.
    """
    times = [tx.initiated_at for tx in transactions]
    earliest, latest = min(times), max(times)
    senders = sorted({tx.sender for tx in transactions})

    # Binary rows, read by psycopg's C loaders: the history has up to 2,500 rows per bundle.
    with server_binding_cursor(binary_results=True) as cursor:
        cursor.execute(FACTS_SQL, {"device_id": bundle.device_id, "bundle_pk": bundle.pk,
                                   "sequence": bundle.sequence, "rejected_bundle": str(BundleStatus.REJECTED),
                                   "rejected_tx": str(TransactionStatus.REJECTED)})
        facts = cursor.fetchone()
        key_registered_at, previous_sequence, sequence_conflict, previous_bundle_latest = facts or (None, None,
                                                                                                  False, None)

        cursor.execute(HISTORY_SQL, {"device_id": bundle.device_id, "bundle_id": bundle.bundle_id,
                                     "device_since": earliest - DEVICE_LOOKBACK, "device_limit": DEVICE_HISTORY_LIMIT,
                                     "senders": senders, "sender_since": earliest - SENDER_LOOKBACK,
                                     "sender_until": latest + SENDER_LOOKAHEAD, "sender_limit": SENDER_HISTORY_LIMIT,
                                     "rejected_tx": str(TransactionStatus.REJECTED)})
        rows = cursor.fetchall()

    device_history, sender_history = [], []
    for row in rows:
        past = PastTransaction._make(row)
        (device_history if past.device_id == bundle.device_id else sender_history).append(past)
    device_history.sort(key=lambda past: past.initiated_at)

    return BundleContext(
        bundle_id=bundle.bundle_id,
        device_id=bundle.device_id,
        sequence=bundle.sequence,
        sealed_at=bundle.device_created_at,
        key_registered_at=key_registered_at,
        time_zone=time_zone,
        previous_sequence=previous_sequence,
        sequence_conflict=sequence_conflict,
        previous_bundle_latest=previous_bundle_latest,
        device_history=device_history,
        sender_history=sender_history,
    )
