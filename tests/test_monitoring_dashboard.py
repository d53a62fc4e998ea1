"""The operations dashboard on the admin index."""

from datetime import timedelta

import pytest
from django.core.cache import caches
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from bundles.models import BundleStatus
from devices.models import Device
from molam_offline.roles import OPS, PAY_ADMIN
from tests.monitoring_helpers import accept, heartbeat, make_bundles, queue, reject

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fresh_cache():
    caches["local"].clear()
    yield
    caches["local"].clear()


@pytest.fixture
def ops_client(client, make_user):
    """An ops user with access to every country, as the dashboard's figures cover them all."""
    from django.contrib.auth.models import Permission

    user = make_user("ops-user", role=OPS)
    user.user_permissions.add(Permission.objects.get(content_type__app_label="policies", codename="review_country"))
    client.force_login(user)
    return client


def test_dashboard_hidden_from_country_scoped_reviewer(client, make_user):
    from policies.scoping import grant_country

    user = make_user("sn-reviewer", role=OPS)
    grant_country(user, "SN")
    client.force_login(user)

    html = client.get("/admin/").content.decode()

    assert 'id="molam-dashboard"' not in html


def section(html, element_id):
    start = html.index(f'id="{element_id}"')
    return html[start:html.index("</table>", start)]


def test_dashboard_shows_every_symptom(ops_client, make_device):
    accept(80)
    reject(12, "clock_skew")
    reject(3, "made_up_reason")
    queue(accept(1, age=timedelta(hours=3)), age=timedelta(hours=2))
    heartbeat("reconcile@worker-1", age=timedelta(minutes=50), error="ledger timed out")
    make_bundles(11, BundleStatus.QUARANTINED, age=timedelta(hours=6))
    make_device("DEVICE_CLONED")
    Device.objects.filter(device_id="DEVICE_CLONED").update(key_conflict_detected_at=timezone.now())

    html = ops_client.get("/admin/").content.decode()

    status = section(html, "dashboard-status")
    assert "<td class=\"num\">80</td>" in status
    assert "<td class=\"num\">15</td>" in status
    assert "Rejection rate: 15.8% (15 of 95); warning above 5.0%, escalate above 10.0%." in html
    reasons = section(html, "dashboard-reasons")
    assert "Unknown reason: escalate" in reasons
    assert "made_up_reason" in reasons
    queue_html = section(html, "dashboard-queue")
    assert "2h00m" in queue_html
    assert "reconcile@worker-1" in html
    assert "stuck: over 30m" in html
    assert "ledger timed out" in html
    assert "Waiting longer than 4h00m" in html
    assert "DEVICE_CLONED" in section(html, "dashboard-devices")
    assert 'class="level-0">\n        <th colspan="2">Rejected as confirmed fraud' in html
    assert 'id="dashboard-chart"' in html


def test_dashboard_keeps_app_list(ops_client):
    html = ops_client.get("/admin/").content.decode()

    assert 'id="molam-dashboard"' in html
    assert "app-bundles" in html


def test_dashboard_hidden_without_bundle_permission(client, django_user_model):
    client.force_login(django_user_model.objects.create_user("staff-only", is_staff=True))

    html = client.get("/admin/").content.decode()

    assert 'id="molam-dashboard"' not in html


def test_dashboard_query_count_pinned(ops_client, make_device):
    accept(30)
    reject(5)
    make_bundles(3, BundleStatus.QUARANTINED)
    queue(accept(3))
    for index in range(5):
        heartbeat(f"reconcile@worker-{index}", age=timedelta(minutes=index))
        make_device(f"DEVICE_{index}")
    Device.objects.update(missing_sequence_count=2)
    ops_client.get("/admin/")  # warm the session and permission caches of this test client

    caches["local"].clear()
    with CaptureQueriesContext(connection) as cold:
        ops_client.get("/admin/")
    with CaptureQueriesContext(connection) as warm:
        ops_client.get("/admin/")

    # A fixed number of queries whatever the row counts: status, reasons, confirmed
    # fraud, chart, four for the queue, workers, four for the review backlog, devices,
    # firing alerts.
    figure_queries = len(cold) - len(warm)
    assert figure_queries == 15


def test_dashboard_bundle_queries_bounded(ops_client):
    with CaptureQueriesContext(connection) as queries:
        ops_client.get("/admin/")

    bundle_queries = [q["sql"] for q in queries.captured_queries if "offline_tx_bundles" in q["sql"]]
    assert len(bundle_queries) == 8
    for sql in bundle_queries:
        # Each is bounded by the receive time (the status/created_at indexes) or a LIMIT.
        assert '"created_at" >' in sql or '"created_at" <' in sql or "LIMIT" in sql, sql
        assert "COUNT(*)" not in sql or "LIMIT" in sql, sql
