"""Accepted bundles and opening balances written straight with the ORM, for the ledger tests."""

from datetime import timedelta
from decimal import Decimal

from django.db import connection
from django.utils import timezone

from bundles.models import Bundle, BundleStatus, ReconciliationStatus, Transaction, TransactionStatus
from reconciliation.ledger import check_ledger
from reconciliation.models import JournalEntry, LedgerAccount
from reconciliation.services import OpeningBalance, enqueue_bundle, set_opening_balances


def make_accepted_bundle(bundle_id, device_id, payments, *, status=BundleStatus.ACCEPTED, queue=True,
                         priority=5):
    """Store a validated bundle of `payments` (local_id, sender, receiver, amount[, tx status]) and queue it."""
    now = timezone.now()
    bundle = Bundle.objects.create(
        bundle_id=bundle_id, device_id=device_id, country="SN", sequence=1, status=status,
        reconciliation_status=ReconciliationStatus.QUEUED if queue else ReconciliationStatus.NOT_QUEUED,
        device_created_at=now, device_sent_at=now, signature_alg="Ed25519", signature_value="x",
        content_hash="0" * 64, payload={}, tx_count=len(payments), currency="XOF")
    for position, payment in enumerate(payments):
        local_id, sender, receiver, amount = payment[:4]
        tx_status = payment[4] if len(payment) > 4 else TransactionStatus.ACCEPTED
        Transaction.objects.create(bundle=bundle, device_id=device_id, position=position, local_id=local_id,
                                   type="p2p", amount=Decimal(amount), currency="XOF", sender=sender,
                                   receiver=receiver, initiated_at=now - timedelta(hours=1), status=tx_status)
    if queue:
        enqueue_bundle(bundle, priority=priority)
    return bundle


def fund(balances: dict[str, str], currency="XOF"):
    set_opening_balances([OpeningBalance(identifier=identifier, currency=currency, amount=Decimal(amount))
                          for identifier, amount in balances.items()], source="test")


def balance(identifier, currency="XOF") -> Decimal:
    return LedgerAccount.objects.get(identifier=identifier, currency=currency).balance


def assert_ledger_consistent():
    assert check_ledger() == []
    with connection.cursor() as cursor:
        cursor.execute("SELECT device_id, local_id, COUNT(*) FROM offline_ledger_entries "
                       "GROUP BY device_id, local_id HAVING COUNT(*) > 1")
        assert cursor.fetchall() == []
    posted = Transaction.objects.filter(status=TransactionStatus.POSTED).count()
    assert JournalEntry.objects.count() == posted
