import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from devices.models import Device
from molam_offline.pagination import EstimatedCountPaginator, planner_row_estimate

pytestmark = pytest.mark.django_db


@pytest.fixture
def three_devices():
    Device.objects.bulk_create(Device(device_id=f"DEV_{index}", tenant_type="merchant", tenant_id="t", country="SN",
                                      pubkey_pem="-", key_alg="Ed25519") for index in range(3))


def test_small_result_is_counted_exactly(three_devices):
    paginator = EstimatedCountPaginator(Device.objects.order_by("device_id"), 2)

    assert paginator.count == 3
    assert paginator.num_pages == 2


def test_big_result_uses_planner_estimate(three_devices):
    class AlwaysEstimate(EstimatedCountPaginator):
        EXACT_COUNT_LIMIT = 0

    queryset = Device.objects.filter(country="SN").order_by("device_id")
    paginator = AlwaysEstimate(queryset, 2)

    with CaptureQueriesContext(connection) as queries:
        count = paginator.count

    assert count == planner_row_estimate(queryset)
    assert isinstance(count, int)
    assert not any("COUNT(" in query["sql"].upper() for query in queries.captured_queries)


def test_estimate_of_list_is_none():
    assert planner_row_estimate([1, 2, 3]) is None
    assert EstimatedCountPaginator([1, 2, 3], 2).count == 3


def test_api_device_list_pages_newest_first(api_client, pay_admin_token, three_devices):
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {pay_admin_token}")

    response = api_client.get("/offline/devices")

    assert response.status_code == 200, response.content
    listed = [device["device_id"] for device in response.json()["results"]]
    assert sorted(listed) == ["DEV_0", "DEV_1", "DEV_2"]
    assert response.json()["next"] is None
