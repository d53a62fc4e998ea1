"""The ledger invariant after a seeded random mix of pushes, re-pushes, manual approvals and reconciles."""

import random
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.db.models import Sum

from bundles.models import Bundle, Transaction
from reconciliation.models import JournalEntry, LedgerAccount
from reconciliation.worker import ReconciliationWorker
from tests.ledger_helpers import assert_ledger_consistent, fund, make_accepted_bundle

pytestmark = pytest.mark.django_db

WALLETS = [f"+2217700002{n:02d}" for n in range(8)]


def approve_like_the_runbook(bundle_id: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute("UPDATE offline_tx_bundles SET status = 'accepted' WHERE bundle_id = %s", [bundle_id])
        cursor.execute("INSERT INTO offline_sync_queue (bundle_id, priority) VALUES (%s, 1)", [bundle_id])


@pytest.mark.parametrize("seed", [7, 2026])
def test_random_run_keeps_ledger_invariant(seed, make_device, push, now):
    rng = random.Random(seed)
    openings = {wallet: Decimal(rng.randrange(0, 20000, 500)) for wallet in WALLETS}
    fund({wallet: str(amount) for wallet, amount in openings.items()})
    devices = [make_device(f"RANDOM_{seed}_{number}") for number in range(3)]
    pushed, quarantined = [], []

    for step in range(40):
        action = rng.choices(["push", "repush", "quarantine", "approve", "reconcile"], [5, 1, 1, 1, 2])[0]
        if action == "push" or (action == "repush" and not pushed):
            device = rng.choice(devices)
            payments = []
            for position in range(rng.randint(1, 4)):
                sender, receiver = rng.sample(WALLETS, 2)
                payments.append(device.transaction(amount=str(rng.randrange(500, 6000, 500)), sender=sender,
                                                   receiver=receiver,
                                                   initiated_at=now - timedelta(minutes=90 - step - position)))
            bundle = device.seal(payments, created_at=now - timedelta(minutes=5))
            assert push(device, bundle).status_code == 202
            pushed.append((device, bundle))
        elif action == "repush":
            device, bundle = rng.choice(pushed)
            assert push(device, bundle, sent_at=now + timedelta(seconds=step)).status_code == 200
        elif action == "quarantine":
            sender, receiver = rng.sample(WALLETS, 2)
            bundle_id = f"quarantined_{seed}_{step}"
            make_accepted_bundle(bundle_id, f"REVIEWED_{seed}", [(f"q-{step}", sender, receiver, "2500", "pending")],
                                 status="quarantined", queue=False)
            quarantined.append(bundle_id)
        elif action == "approve" and quarantined:
            approve_like_the_runbook(quarantined.pop(rng.randrange(len(quarantined))))
        elif action == "reconcile":
            ReconciliationWorker(name="random", batch_size=rng.randint(1, 5)).run_once()
        assert_ledger_consistent()

    ReconciliationWorker(name="random", batch_size=3).run_once()

    assert_ledger_consistent()
    total = LedgerAccount.objects.aggregate(balance=Sum("balance"), opening=Sum("opening_balance"))
    assert total["balance"] == total["opening"] == sum(openings.values())
    assert not Transaction.objects.filter(bundle__status="accepted", status__in=["accepted", "pending"]).exists()
    assert Transaction.objects.filter(status="posted").count() == JournalEntry.objects.count() > 0
    assert Transaction.objects.filter(status="failed", failure_reason__startswith="insufficient_funds").exists()
    assert not Bundle.objects.filter(status="accepted", reconciliation_status="queued").exists()
