"""Double-entry posting of an accepted bundle's transactions to the wallet ledger.

Lock order, the same for every worker so that two of them cannot deadlock: the bundle row,
then its queue row, then the ledger accounts in ascending id order.
"""

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal

from django.db import IntegrityError, transaction
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


def account_keys(transactions) -> set[AccountKey]:
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
    with transaction.atomic():
        LedgerAccount.objects.bulk_create([LedgerAccount(identifier=identifier, currency=currency)
                                           for identifier, currency in sorted(keys)], ignore_conflicts=True)


def lock_accounts(keys: set[AccountKey]) -> dict[AccountKey, LedgerAccount]:
    """Lock the accounts of `keys` in ascending id order; all of them must exist."""
    if not keys:
        return {}
    matching = Q()
    for identifier, currency in keys:
        matching |= Q(identifier=identifier, currency=currency)
    # PostgreSQL locks rows in the ORDER BY order because the row lock is taken above the sort.
    rows = LedgerAccount.objects.select_for_update().filter(matching).order_by("id")
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
    """
    posting = BundlePosting(bundle_id=bundle.bundle_id)
    transactions = list(bundle.transactions.order_by("position"))
    postable = [tx for tx in transactions if tx.status in POSTABLE_STATUSES]
    accounts = lock_accounts(account_keys(postable))
    already_posted = dict(JournalEntry.objects.filter(device_id=bundle.device_id,
                                                      local_id__in=[tx.local_id for tx in postable])
                          .values_list("local_id", "transaction_id"))
    now = timezone.now()

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

        if not insert_entry(tx, bundle, sender, receiver, worker):
            # Another worker posted the same (device_id, local_id) from another bundle meanwhile.
            mark_already_posted(tx, None, posting, now)
            continue
        sender.balance -= tx.amount
        receiver.balance += tx.amount
        tx.status, tx.posted_at = TransactionStatus.POSTED, now
        posting.posted.append(tx.local_id)

    if accounts:
        for account in accounts.values():
            account.updated_at = now  # bulk_update does not apply auto_now.
        LedgerAccount.objects.bulk_update(list(accounts.values()), ["balance", "updated_at"])
    Transaction.objects.bulk_update(transactions, ["status", "failed_check", "failure_reason", "posted_at"])
    posting.posted_in_bundle = sum(tx.status == TransactionStatus.POSTED for tx in transactions)
    posting.failed_in_bundle = sum(tx.status == TransactionStatus.FAILED for tx in transactions)
    return posting


def rejection_reason(tx: Transaction, sender: LedgerAccount) -> str:
    if tx.sender == tx.receiver:
        return f"{SAME_ACCOUNT}: sender and receiver are both {tx.sender}"
    if sender.balance < tx.amount:
        return (f"{INSUFFICIENT_FUNDS}: sender {tx.sender} has {sender.balance} {tx.currency}, "
                f"the payment needs {tx.amount} {tx.currency}")
    return ""


def insert_entry(tx: Transaction, bundle: Bundle, sender: LedgerAccount, receiver: LedgerAccount,
                 worker: str) -> bool:
    """Insert the journal entry of `tx`; return False if (device_id, local_id) is already posted."""
    try:
        with transaction.atomic():
            JournalEntry.objects.create(device_id=tx.device_id, local_id=tx.local_id, transaction=tx,
                                        bundle_id=bundle.bundle_id, debit_account=sender, credit_account=receiver,
                                        amount=tx.amount, currency=tx.currency, posted_by=worker[:128])
    except IntegrityError:
        logger.warning("Transaction %s/%s of bundle %s is already in the ledger; not posting it again",
                       tx.device_id, tx.local_id, bundle.bundle_id)
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
