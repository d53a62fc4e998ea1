"""Fixtures of the back-office tests: staff users per role and country, bundles in each review state."""

import itertools
from datetime import timedelta
from decimal import Decimal

import pytest
from django.test import Client
from django.utils import timezone

from bundles.models import Bundle, BundleStatus, Transaction, TransactionStatus
from bundles.reasons import ReasonCode, reason_text
from devices.activity import add_activity, totals_by_local_day
from devices.models import Device
from policies.scoping import grant_country

PLACE_HOLDING = {BundleStatus.ACCEPTED, BundleStatus.PENDING_REVIEW, BundleStatus.QUARANTINED}
DEFAULT_REASONS = {
    BundleStatus.QUARANTINED: (ReasonCode.HIGH_FRAUD_SCORE, "fraud score 91 at or above 80"),
    BundleStatus.PENDING_REVIEW: (ReasonCode.HIGH_FRAUD_SCORE, "fraud score 65 at or above 60"),
    BundleStatus.REJECTED: (ReasonCode.BUNDLE_TOO_OLD, "bundle too old (created 240 hours ago; max 72)"),
    BundleStatus.ACCEPTED: ("", None),
    BundleStatus.RECEIVED: ("", None),
}


@pytest.fixture
def staff(make_user):
    """Create a staff user of a role with access to the given countries."""

    def make(username, role, countries=("SN",)):
        user = make_user(username, role=role)
        for country in countries:
            grant_country(user, country)
        return user

    return make


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def make_bundle(make_device, now):
    """Store a bundle as validation would have left it, with its transactions and daily totals.

    The device is registered on first use. Bundles that hold a place (accepted, in
    review) are counted in offline_device_activity, as the policy checks count them.
    """
    numbers = itertools.count(1)

    def make(device_id="DEV_SN", *, country="SN", status=BundleStatus.QUARANTINED, reason_code=None, amounts=None,
             scores=None, sira_reasons=None, validated=True, failed_checks=None):
        if not Device.objects.filter(device_id=device_id).exists():
            make_device(device_id, country=country)
        amounts = [Decimal(a) for a in (amounts or ["1500", "2500"])]
        scores = scores or [None] * len(amounts)
        failed_checks = failed_checks or [""] * len(amounts)
        number = next(numbers)
        default_code, detail = DEFAULT_REASONS[status]
        code = default_code if reason_code is None else reason_code
        rejected_reason = reason_text(code, detail or code) if code else None
        known_scores = [score for score in scores if score is not None]

        bundle = Bundle.objects.create(
            bundle_id=f"bundle_{device_id.lower()}_{number:04d}", device_id=device_id, country=country,
            sequence=number, status=status, reason_code=code, rejected_reason=rejected_reason,
            device_created_at=now - timedelta(hours=1), device_sent_at=now, signature_alg="Ed25519",
            signature_value="x", content_hash=f"{number:064d}", payload={}, tx_count=len(amounts),
            total_amount=sum(amounts), currency="XOF", max_sira_score=max(known_scores) if known_scores else None,
            validated_at=timezone.now() if validated else None)

        tx_status = {BundleStatus.ACCEPTED: TransactionStatus.ACCEPTED, BundleStatus.REJECTED:
                     TransactionStatus.REJECTED}.get(status, TransactionStatus.PENDING)
        transactions = [
            Transaction.objects.create(
                bundle=bundle, device_id=device_id, position=position, local_id=f"tx-{number:04d}-{position}",
                type="p2p", amount=amount, currency="XOF", sender="+221770000001", receiver="+221770000002",
                initiated_at=now - timedelta(hours=2, minutes=position), status=tx_status,
                failed_check=failed_checks[position] or (code if status == BundleStatus.REJECTED else ""),
                sira_score=scores[position], sira_reasons=(sira_reasons or {}).get(position, []))
            for position, amount in enumerate(amounts)
        ]
        if status in PLACE_HOLDING:
            counted = [tx for tx in transactions if not tx.failed_check]
            add_activity(device_id, totals_by_local_day(counted, "Africa/Dakar"))
        return bundle

    return make
