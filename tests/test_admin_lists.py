"""Admin list pages: they open, filter and search, and their query count does not grow with the rows."""

from datetime import date, timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from audit.models import AuditAction
from audit.services import record
from bundles.client import DeviceIdentity
from bundles.models import Bundle, BundleStatus, SequenceAnomaly, Transaction
from devices.models import Device, DeviceActivity
from policies.models import Policy
from reconciliation.models import SyncQueueItem

pytestmark = pytest.mark.django_db

PUBLIC_KEY = DeviceIdentity(device_id="ADMIN_TEST").pubkey_pem
COUNTRIES = ["SN", "ML", "CI"]


@pytest.fixture
def admin_client(client, make_user, settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    client.force_login(make_user("root", superuser=True))
    return client


class Rows:
    """Create devices with one bundle each, and every row that hangs off a bundle, numbered from 0."""

    def __init__(self):
        self.created = 0

    def add(self, count: int) -> None:
        for number in range(self.created, self.created + count):
            self.add_one(number)
        self.created += count

    def add_one(self, number: int) -> None:
        now = timezone.now()
        country = COUNTRIES[number % len(COUNTRIES)]
        device = Device.objects.create(device_id=f"ADMIN_DEV_{number:03d}", tenant_type="merchant",
                                       tenant_id=f"merchant_{number}", country=country, pubkey_pem=PUBLIC_KEY,
                                       key_alg="Ed25519")
        rejected = number % 2 == 1
        bundle = Bundle.objects.create(
            bundle_id=f"admin_bundle_{number:03d}", device=device, country=country, sequence=1,
            status=BundleStatus.REJECTED if rejected else BundleStatus.ACCEPTED,
            reason_code="invalid_signature" if rejected else "",
            rejected_reason="invalid_signature: test" if rejected else None,
            device_created_at=now, device_sent_at=now, signature_alg="Ed25519", signature_value="c2ln",
            content_hash=f"{number:064d}", payload={}, tx_count=2, total_amount=Decimal(3000), currency="XOF")
        Transaction.objects.bulk_create(
            Transaction(bundle=bundle, device_id=device.device_id, position=position, local_id=f"tx-{position}",
                        type="p2p", amount=Decimal(1500), currency="XOF", sender="+221770000001",
                        receiver="+221770000002", initiated_at=now)
            for position in range(2))
        SyncQueueItem.objects.create(bundle=bundle)
        SequenceAnomaly.objects.create(device=device, kind="gap", sequence=2)
        DeviceActivity.objects.create(device=device, activity_date=date.today() - timedelta(days=number),
                                      tx_count=2, total_amount=Decimal(3000))
        Policy.objects.get_or_create(country=f"Q{chr(ord('A') + number % 26)}", defaults={"currency": "XOF"})
        record(AuditAction.BUNDLE_RECEIVED, actor=f"device:{device.device_id}", bundle_id=bundle.bundle_id,
               device_id=device.device_id, country=country, details={"sequence": 1})


CHANGELISTS = [
    "/admin/devices/device/",
    "/admin/devices/deviceactivity/",
    "/admin/bundles/bundle/",
    "/admin/bundles/transaction/",
    "/admin/bundles/sequenceanomaly/",
    "/admin/policies/policy/",
    "/admin/audit/auditlog/",
    "/admin/reconciliation/syncqueueitem/",
]


def count_queries(admin_client, url: str) -> int:
    with CaptureQueriesContext(connection) as queries:
        response = admin_client.get(url)
    assert response.status_code == 200, f"{url}: HTTP {response.status_code}"
    return len(queries)


@pytest.mark.parametrize("url", CHANGELISTS)
def test_changelist_query_count_does_not_grow(admin_client, url):
    rows = Rows()
    rows.add(3)
    with_3 = count_queries(admin_client, url)

    rows.add(27)
    with_30 = count_queries(admin_client, url)

    assert with_30 == with_3, f"{url}: {with_3} queries with 3 rows, {with_30} with 30"


@pytest.mark.parametrize("url", CHANGELISTS)
def test_changelist_shows_rows(admin_client, url):
    Rows().add(4)

    response = admin_client.get(url)

    assert response.status_code == 200
    assert len(response.context["cl"].result_list) >= 4


def result_ids(admin_client, url: str, attribute: str) -> set:
    response = admin_client.get(url)
    assert response.status_code == 200, f"{url}: HTTP {response.status_code}"
    return {getattr(row, attribute) for row in response.context["cl"].result_list}


def test_bundle_list_filters(admin_client):
    Rows().add(6)
    url = "/admin/bundles/bundle/"

    rejected = result_ids(admin_client, f"{url}?status__exact=rejected", "bundle_id")
    senegal = result_ids(admin_client, f"{url}?country__exact=SN", "bundle_id")
    bad_signature = result_ids(admin_client, f"{url}?reason_code__exact=invalid_signature", "bundle_id")

    assert rejected == {"admin_bundle_001", "admin_bundle_003", "admin_bundle_005"}
    assert senegal == {"admin_bundle_000", "admin_bundle_003"}
    assert bad_signature == rejected


def test_bundle_list_search(admin_client):
    Rows().add(6)
    url = "/admin/bundles/bundle/"

    by_bundle = result_ids(admin_client, f"{url}?q=admin_bundle_004", "bundle_id")
    by_device = result_ids(admin_client, f"{url}?q=ADMIN_DEV_002", "bundle_id")

    assert by_bundle == {"admin_bundle_004"}
    assert by_device == {"admin_bundle_002"}


def test_bundle_search_finds_unknown_device(admin_client, make_device, sample_bundle, push):
    # A bundle from an unregistered device has no device row to join.
    identity = make_device("NOT_REGISTERED", register=False)
    bundle = sample_bundle(identity)
    assert push(identity, bundle).status_code == 202

    found = result_ids(admin_client, "/admin/bundles/bundle/?q=NOT_REGISTERED", "bundle_id")

    assert found == {bundle["bundle_id"]}


def test_device_list_filters_and_search(admin_client):
    Rows().add(6)
    url = "/admin/devices/device/"

    mali = result_ids(admin_client, f"{url}?country__exact=ML", "device_id")
    active = result_ids(admin_client, f"{url}?status__exact=active", "device_id")
    searched = result_ids(admin_client, f"{url}?q=ADMIN_DEV_005", "device_id")

    assert mali == {"ADMIN_DEV_001", "ADMIN_DEV_004"}
    assert len(active) == 6
    assert searched == {"ADMIN_DEV_005"}


def test_transaction_list_filters_and_search(admin_client):
    Rows().add(4)
    url = "/admin/bundles/transaction/"

    pending = result_ids(admin_client, f"{url}?status__exact=pending", "bundle_id")
    by_bundle = result_ids(admin_client, f"{url}?q=admin_bundle_001", "bundle_id")
    by_device = result_ids(admin_client, f"{url}?q=ADMIN_DEV_002", "bundle_id")

    assert len(pending) == 4
    assert by_bundle == {"admin_bundle_001"}
    assert by_device == {"admin_bundle_002"}


def test_audit_log_filters_and_search(admin_client):
    Rows().add(6)
    url = "/admin/audit/auditlog/"

    ivory_coast = result_ids(admin_client, f"{url}?country__exact=CI", "bundle_id")
    received = result_ids(admin_client, f"{url}?action__exact=bundle_received", "bundle_id")
    by_bundle = result_ids(admin_client, f"{url}?q=admin_bundle_003", "bundle_id")
    by_device = result_ids(admin_client, f"{url}?q=ADMIN_DEV_004", "device_id")

    assert ivory_coast == {"admin_bundle_002", "admin_bundle_005"}
    assert len(received) == 6
    assert by_bundle == {"admin_bundle_003"}
    assert by_device == {"ADMIN_DEV_004"}


def test_sync_queue_filters_and_search(admin_client):
    Rows().add(6)
    url = "/admin/reconciliation/syncqueueitem/"

    pending = result_ids(admin_client, f"{url}?status__exact=pending", "bundle_id")
    senegal = result_ids(admin_client, f"{url}?country=SN", "bundle_id")
    by_bundle = result_ids(admin_client, f"{url}?q=admin_bundle_001", "bundle_id")
    by_device = result_ids(admin_client, f"{url}?q=ADMIN_DEV_005", "bundle_id")

    assert len(pending) == 6
    assert senegal == {"admin_bundle_000", "admin_bundle_003"}
    assert by_bundle == {"admin_bundle_001"}
    assert by_device == {"admin_bundle_005"}


def test_device_activity_and_anomaly_filters(admin_client):
    Rows().add(6)

    activity = result_ids(admin_client, "/admin/devices/deviceactivity/?country=ML", "device_id")
    anomalies = result_ids(admin_client, "/admin/bundles/sequenceanomaly/?country=CI", "device_id")
    searched = result_ids(admin_client, "/admin/bundles/sequenceanomaly/?q=ADMIN_DEV_000", "device_id")

    assert activity == {"ADMIN_DEV_001", "ADMIN_DEV_004"}
    assert anomalies == {"ADMIN_DEV_002", "ADMIN_DEV_005"}
    assert searched == {"ADMIN_DEV_000"}


def test_bundle_change_page_shows_transactions_inline(admin_client):
    rows = Rows()
    rows.add(1)
    bundle = Bundle.objects.get(bundle_id="admin_bundle_000")

    response = admin_client.get(f"/admin/bundles/bundle/{bundle.pk}/change/")

    assert response.status_code == 200
    content = response.content.decode()
    assert "tx-0" in content
    assert "tx-1" in content
    assert "+221770000002" in content


def test_bundle_change_page_query_count_does_not_grow(admin_client):
    Rows().add(1)
    bundle = Bundle.objects.get(bundle_id="admin_bundle_000")
    url = f"/admin/bundles/bundle/{bundle.pk}/change/"
    with_2 = count_queries(admin_client, url)

    now = timezone.now()
    Transaction.objects.bulk_create(
        Transaction(bundle=bundle, device_id=bundle.device_id, position=position, local_id=f"tx-{position}",
                    type="p2p", amount=Decimal(1500), currency="XOF", sender="+221770000001",
                    receiver="+221770000002", initiated_at=now)
        for position in range(2, 30))
    with_30 = count_queries(admin_client, url)

    assert with_30 == with_2, f"{with_2} queries with 2 transactions, {with_30} with 30"
