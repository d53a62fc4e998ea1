"""Double-entry posting of an accepted bundle's transactions to the wallet ledger.

Lock order, the same for every worker so that two of them cannot deadlock: the bundle row,
then its queue row, then the ledger accounts in ascending id order.
"""

import logging
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal

from django.db import IntegrityError, connection, transaction
from django.db.models import F, Q, Sum
from django.utils import timezone

from bundles.models import Bundle, ReconciliationStatus, Transaction, TransactionStatus

from .models import JournalEntry, LedgerAccount

logger = logging.getLogger(__name__)

# Reason codes stored at the start of Transaction.failure_reason, as "code: detail".
INSUFFICIENT_FUNDS = "insufficient_funds"
SAME_ACCOUNT = "same_account"
ALREADY_POSTED = "already_posted"

AccountKey = tuple[str, str]  # (identifier, currency)

# Statuses posted when their bundle is accepted. `pending` is what a quarantined or
# pending-review bundle's payments keep when an operator accepts the bundle by hand
# (UPDATE offline_tx_bundles SET status = 'accepted'), so the bundle decision covers them.
POSTABLE_STATUSES = (TransactionStatus.ACCEPTED, TransactionStatus.PENDING)


@dataclass
class BundlePosting:
    """The outcome of posting one bundle, by transaction local ID."""

    bundle_id: str
    posted: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    # Statuses of all the bundle's payments afterwards, earlier runs included: a bundle
    # queued again keeps `partial` for payments that failed the first time.
    posted_in_bundle: int = 0
    failed_in_bundle: int = 0

    @property
    def reconciliation_status(self) -> str:
        if self.failed_in_bundle and not self.posted_in_bundle:
            return ReconciliationStatus.FAILED
        if self.failed_in_bundle:
            return ReconciliationStatus.PARTIAL
        return ReconciliationStatus.POSTED

    def as_outcome(self) -> dict:
        transactions = {local_id: "posted" for local_id in self.posted}
        transactions.update({local_id: f"failed: {reason}" for local_id, reason in self.failed.items()})
        transactions.update({local_id: f"skipped: {why}" for local_id, why in self.skipped.items()})
        return {"posted": len(self.posted), "failed": len(self.failed), "skipped": len(self.skipped),
                "reconciliation_status": str(self.reconciliation_status), "transactions": transactions}


def account_keys(transactions: Iterable[Transaction]) -> set[AccountKey]:
    keys = set()
    for tx in transactions:
        keys.add((tx.sender, tx.currency))
        keys.add((tx.receiver, tx.currency))
    return keys


def ensure_accounts(keys: set[AccountKey]) -> None:
    """Create missing accounts with a zero balance, in a transaction of their own.

    Creating them before the posting transaction means that posting only ever locks
    existing rows in id order. Inserting inside it would make workers wait on each
    other's uncommitted inserts in a second order, which can deadlock.
    """
    if not keys:
        return
    # Most accounts exist after the first payments, and one SELECT costs less than an
    # INSERT ... ON CONFLICT DO NOTHING of every account of the bundle.
    missing = keys - set(LedgerAccount.objects.filter(accounts_matching(keys)).values_list("identifier", "currency"))
    if not missing:
        return
    with transaction.atomic():
        LedgerAccount.objects.bulk_create([LedgerAccount(identifier=identifier, currency=currency)
                                           for identifier, currency in sorted(missing)], ignore_conflicts=True)


def accounts_matching(keys: set[AccountKey]) -> Q:
    """Return a filter for exactly the accounts of `keys`, with one IN list per currency.

    An OR of one (identifier, currency) pair per account selects the same rows but costs
    Django milliseconds per bundle to build.
    """
    identifiers_by_currency = defaultdict(set)
    for identifier, currency in keys:
        identifiers_by_currency[currency].add(identifier)
    matching = Q()
    for currency, identifiers in sorted(identifiers_by_currency.items()):
        matching |= Q(currency=currency, identifier__in=sorted(identifiers))
    return matching


def lock_accounts(keys: set[AccountKey]) -> dict[AccountKey, LedgerAccount]:
    """Lock the accounts of `keys` in ascending id order; all of them must exist."""
    if not keys:
        return {}
    # PostgreSQL locks rows in the ORDER BY order because the row lock is taken above the sort.
    rows = LedgerAccount.objects.select_for_update().filter(accounts_matching(keys)).order_by("id")
    accounts = {(account.identifier, account.currency): account for account in rows}
    missing = keys - accounts.keys()
    if missing:
        raise LookupError(f"ledger accounts missing for {sorted(missing)}; ensure_accounts must run first")
    return accounts


def post_bundle_transactions(bundle: Bundle, *, worker: str) -> BundlePosting:
    """Post the accepted (or pending) transactions of a locked bundle and store each one's outcome.

    Must run inside the transaction that holds the bundle's row lock. A sender whose
    balance does not cover a payment (the same money spent offline on two devices) gets
    the payment marked failed, and nothing is posted for it.

    The journal entries are inserted with one multi-row INSERT. If another worker posted one
    of the payments from another bundle after the check for earlier entries, that INSERT
    fails on the unique constraint and its savepoint is rolled back. The bundle is then
    posted again one entry at a time, so that only the payments already in the journal are
    skipped.
    """
    transactions = list(bundle.transactions.order_by("position"))
    accounts = lock_accounts(account_keys(tx for tx in transactions if tx.status in POSTABLE_STATUSES))
    opening_balances = {key: account.balance for key, account in accounts.items()}
    now = timezone.now()

    entries = []
    posting = plan_posting(bundle, transactions, accounts, now, worker,
                           insert=lambda entry: entries.append(entry) or True)
    if entries and not insert_entries(entries, bundle):
        for key, account in accounts.items():
            account.balance = opening_balances[key]
        transactions = list(bundle.transactions.order_by("position"))
        posting = plan_posting(bundle, transactions, accounts, now, worker, insert=insert_entry)

    save_balances([account for key, account in accounts.items() if account.balance != opening_balances[key]], now)
    save_transaction_statuses(transactions, posting)
    posting.posted_in_bundle = sum(tx.status == TransactionStatus.POSTED for tx in transactions)
    posting.failed_in_bundle = sum(tx.status == TransactionStatus.FAILED for tx in transactions)
    return posting


def plan_posting(bundle: Bundle, transactions: list[Transaction], accounts: dict[AccountKey, LedgerAccount], now,
                 worker: str, *, insert: Callable[[JournalEntry], bool]) -> BundlePosting:
    """Decide each transaction's outcome, move the balances in memory and pass each entry to `insert`.

    `insert` returns False when the journal already has the entry's (device_id, local_id).
    """
    posting = BundlePosting(bundle_id=bundle.bundle_id)
    postable = [tx for tx in transactions if tx.status in POSTABLE_STATUSES]
    already_posted = dict(JournalEntry.objects.filter(device_id=bundle.device_id,
                                                      local_id__in=[tx.local_id for tx in postable])
                          .values_list("local_id", "transaction_id"))

    for tx in transactions:
        if tx.status not in POSTABLE_STATUSES:
            posting.skipped[tx.local_id] = str(tx.status)
            continue
        if tx.local_id in already_posted:
            mark_already_posted(tx, already_posted[tx.local_id], posting, now)
            continue

        sender = accounts[(tx.sender, tx.currency)]
        receiver = accounts[(tx.receiver, tx.currency)]
        reason = rejection_reason(tx, sender)
        if reason:
            tx.status, tx.failed_check, tx.failure_reason = TransactionStatus.FAILED, reason.split(":")[0], reason
            posting.failed[tx.local_id] = reason
            continue

        entry = JournalEntry(device_id=tx.device_id, local_id=tx.local_id, transaction=tx, bundle_id=bundle.bundle_id,
                             debit_account=sender, credit_account=receiver, amount=tx.amount, currency=tx.currency,
                             posted_at=now, posted_by=worker[:128])
        if not insert(entry):
            # Another worker posted the same (device_id, local_id) from another bundle meanwhile.
            mark_already_posted(tx, None, posting, now)
            continue
        sender.balance -= tx.amount
        receiver.balance += tx.amount
        tx.status, tx.posted_at = TransactionStatus.POSTED, now
        posting.posted.append(tx.local_id)
    return posting


def insert_entries(entries: list[JournalEntry], bundle: Bundle) -> bool:
    """Insert all entries in one statement; return False, inserting none, if one is already posted."""
    try:
        with transaction.atomic():
            JournalEntry.objects.bulk_create(entries)
    except IntegrityError:
        logger.warning("Bundle %s from device %s has payments that another worker posted meanwhile; "
                       "posting its entries one by one", bundle.bundle_id, bundle.device_id)
        return False
    return True


def save_balances(accounts: list[LedgerAccount], now) -> None:
    """Write the new balances of locked accounts with one UPDATE."""
    if not accounts:
        return
    # One UPDATE ... FROM unnest: bulk_update builds a CASE WHEN per account and costs
    # Django tens of milliseconds per bundle of 100 payments.
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {LedgerAccount._meta.db_table} AS account SET balance = new.balance, updated_at = %s "
            "FROM unnest(%s::bigint[], %s::numeric[]) AS new(id, balance) WHERE account.id = new.id",
            [now, [account.pk for account in accounts], [account.balance for account in accounts]])


def save_transaction_statuses(transactions: list[Transaction], posting: BundlePosting) -> None:
    """Store the outcome of each postable transaction: one UPDATE for the posted ones, bulk_update for the rest."""
    posted = set(posting.posted)
    posted_rows = [tx for tx in transactions if tx.local_id in posted]
    if posted_rows:
        Transaction.objects.filter(pk__in=[tx.pk for tx in posted_rows]).update(
            status=TransactionStatus.POSTED, posted_at=posted_rows[0].posted_at)

    # Failed, duplicate and repaired rows; skipped ones that were not postable are unchanged.
    changed = [tx for tx in transactions if tx.local_id not in posted
               and (tx.local_id in posting.failed or tx.status in (TransactionStatus.DUPLICATE,
                                                                    TransactionStatus.POSTED))]
    if changed:
        Transaction.objects.bulk_update(changed, ["status", "failed_check", "failure_reason", "posted_at"])


def rejection_reason(tx: Transaction, sender: LedgerAccount) -> str:
    if tx.sender == tx.receiver:
        return f"{SAME_ACCOUNT}: sender and receiver are both {tx.sender}"
    if sender.balance < tx.amount:
        return (f"{INSUFFICIENT_FUNDS}: sender {tx.sender} has {sender.balance} {tx.currency}, "
                f"the payment needs {tx.amount} {tx.currency}")
    return ""


def insert_entry(entry: JournalEntry) -> bool:
    """Insert one journal entry; return False if its (device_id, local_id) is already posted."""
    try:
        with transaction.atomic():
            entry.save(force_insert=True)
    except IntegrityError:
        logger.warning("Transaction %s/%s of bundle %s is already in the ledger; not posting it again",
                       entry.device_id, entry.local_id, entry.bundle_id)
        return False
    return True


def mark_already_posted(tx: Transaction, entry_transaction_id: int | None, posting: BundlePosting, now) -> None:
    if entry_transaction_id == tx.pk:
        # The entry is this very row's; only the status was lost, which one database
        # transaction per bundle should make impossible. Repair it rather than fail.
        tx.status, tx.posted_at = TransactionStatus.POSTED, tx.posted_at or now
        posting.skipped[tx.local_id] = "already posted"
        return
    tx.status = TransactionStatus.DUPLICATE
    tx.failed_check = ALREADY_POSTED
    tx.failure_reason = f"{ALREADY_POSTED}: {tx.device_id}/{tx.local_id} is already in the ledger from another bundle"
    posting.skipped[tx.local_id] = "duplicate, already in the ledger"


def check_ledger() -> list[str]:
    """Return every broken ledger invariant as a sentence; an empty list means the ledger is consistent.

    Checks that each balance equals its opening balance plus credits minus debits, that
    the balances of each currency add up to its opening balances, and that every entry is
    in the currency of both its accounts.
    """
    problems = []
    debits = dict(JournalEntry.objects.values("debit_account").annotate(total=Sum("amount"))
                  .values_list("debit_account", "total"))
    credits = dict(JournalEntry.objects.values("credit_account").annotate(total=Sum("amount"))
                   .values_list("credit_account", "total"))
    balances = defaultdict(Decimal)
    openings = defaultdict(Decimal)
    for account in LedgerAccount.objects.order_by("id"):
        expected = account.opening_balance + credits.get(account.id, 0) - debits.get(account.id, 0)
        if account.balance != expected:
            problems.append(f"account {account} has balance {account.balance}, its entries give {expected}")
        balances[account.currency] += account.balance
        openings[account.currency] += account.opening_balance

    for currency, total in balances.items():
        if total != openings[currency]:
            problems.append(f"{currency} balances add up to {total}, opening balances to {openings[currency]}")

    mismatched = (JournalEntry.objects.exclude(currency=F("debit_account__currency")).count()
                  + JournalEntry.objects.exclude(currency=F("credit_account__currency")).count())
    if mismatched:
        problems.append(f"{mismatched} journal entry sides are in another currency than their account")
    return problems
