"""A reviewer granted SN only tries every admin URL, search, filter, action and export on ML data."""

import pytest
from django.contrib.auth.models import Group

from audit.models import AuditLog
from bundles.models import Bundle, SequenceAnomaly, Transaction
from devices.models import Device, DeviceActivity
from molam_offline.roles import ENGINEER, FRAUD, OPS, PAY_ADMIN
from policies.models import ChangeRequest, Policy
from policies.scoping import allowed_countries, grant_country, revoke_country
from reconciliation.models import SyncQueueItem
from tests.backoffice import client_for, make_bundle, staff  # noqa: F401  (fixtures)

pytestmark = pytest.mark.django_db

# Every ModelAdmin of the back office, with the model whose rows it lists.
ADMIN_PAGES = {
    "/admin/devices/device/": Device,
    "/admin/devices/deviceactivity/": DeviceActivity,
    "/admin/bundles/bundle/": Bundle,
    "/admin/bundles/transaction/": Transaction,
    "/admin/bundles/sequenceanomaly/": SequenceAnomaly,
    "/admin/audit/auditlog/": AuditLog,
    "/admin/reconciliation/syncqueueitem/": SyncQueueItem,
    "/admin/policies/policy/": Policy,
    "/admin/policies/changerequest/": ChangeRequest,
}
ML_MARKERS = ["DEV_ML", "bundle_dev_ml"]


@pytest.fixture
def two_countries(make_bundle, staff):
    """SN and ML data of every kind; returns the ML rows by model."""
    rows = {}
    for country in ["SN", "ML"]:
        device_id = f"DEV_{country}"
        quarantined = make_bundle(device_id, country=country)
        accepted = make_bundle(device_id, country=country, status="accepted")
        SyncQueueItem.objects.create(bundle=accepted, priority=1)
        device = Device.objects.get(device_id=device_id)
        SequenceAnomaly.objects.create(device=device, kind="gap", sequence=99)
        AuditLog.objects.create(action="manual_rejection", bundle_id=quarantined.bundle_id, device_id=device_id,
                                country=country, actor=f"reviewer_{country}@molam.test")
        requester = staff(f"requester_{country}", OPS, countries=[country])
        ChangeRequest.objects.create(kind="bundle_release", country=country, bundle=quarantined,
                                     policy=Policy.objects.get(country=country), request_note="release",
                                     requested_by=requester)
        rows[country] = {
            Device: device, Bundle: quarantined, Transaction: quarantined.transactions.first(),
            DeviceActivity: DeviceActivity.objects.filter(device=device).first(),
            SequenceAnomaly: SequenceAnomaly.objects.get(device=device),
            AuditLog: AuditLog.objects.get(bundle_id=quarantined.bundle_id, action="manual_rejection"),
            SyncQueueItem: SyncQueueItem.objects.get(bundle=accepted), Policy: Policy.objects.get(country=country),
            ChangeRequest: ChangeRequest.objects.get(bundle=quarantined),
        }
    return rows


@pytest.fixture
def senegal_reviewer(staff):
    """A user in every role group, so that only the country grant limits what they see."""
    user = staff("sn_reviewer", OPS, countries=["SN"])
    user.groups.add(*Group.objects.filter(name__in=[PAY_ADMIN, FRAUD, ENGINEER]))
    return user


def test_lists_show_only_granted_country(two_countries, senegal_reviewer):
    client = client_for(senegal_reviewer)

    for url, model in ADMIN_PAGES.items():
        response = client.get(url)
        assert response.status_code == 200, url
        html = response.content.decode()
        for marker in ML_MARKERS:
            assert marker not in html, f"{url} shows {marker}"
        shown = list(response.context["cl"].result_list)
        assert shown, f"{url} shows no SN rows"
        assert two_countries["ML"][model] not in shown, url
        assert two_countries["SN"][model] in shown, url


def test_search_and_filters_do_not_reach_other_country(two_countries, senegal_reviewer):
    client = client_for(senegal_reviewer)

    for url in ADMIN_PAGES:
        for params in [{"q": "DEV_ML"}, {"q": "bundle_dev_ml_0001"}, {"country": "ML"}]:
            response = client.get(url, params)
            assert response.status_code == 200, (url, params)
            if "cl" in response.context:
                assert list(response.context["cl"].result_list) == [], (url, params)
        filter_choices = client.get(url).content.decode()
        assert "?country=ML" not in filter_choices, url


def test_detail_urls_of_other_country_answer_404(two_countries, senegal_reviewer):
    client = client_for(senegal_reviewer)
    ml = two_countries["ML"]
    urls = [f"{url}{ml[model].pk}/change/" for url, model in ADMIN_PAGES.items()]
    urls += [f"{url}{ml[model].pk}/history/" for url, model in ADMIN_PAGES.items()]
    urls += [f"/admin/bundles/bundle/{ml[Bundle].pk}/review/",
             f"/admin/devices/device/{ml[Device].pk}/replace-key/",
             f"/admin/devices/device/{ml[Device].pk}/delete/"]

    for url in urls:
        assert client.get(url).status_code == 404, url
    sn = two_countries["SN"]
    assert client.get(f"/admin/bundles/bundle/{sn[Bundle].pk}/review/").status_code == 200


def test_actions_on_other_country_change_nothing(two_countries, senegal_reviewer):
    client = client_for(senegal_reviewer)
    ml = two_countries["ML"]

    attempts = [
        ("/admin/bundles/bundle/", {"action": "approve_selected", "_selected_action": [ml[Bundle].pk], "note": "x"}),
        ("/admin/bundles/bundle/", {"action": "reject_selected", "_selected_action": [ml[Bundle].pk],
                                    "reason_code": "confirmed_fraud"}),
        ("/admin/bundles/bundle/", {"action": "requeue_selected", "_selected_action": [ml[Bundle].pk], "note": "x"}),
        ("/admin/devices/device/", {"action": "block_selected", "_selected_action": [ml[Device].pk], "reason": "x"}),
        ("/admin/devices/device/", {"action": "deactivate_selected", "_selected_action": [ml[Device].pk],
                                    "reason": "x"}),
        ("/admin/policies/changerequest/", {"action": "approve_selected", "_selected_action": [ml[ChangeRequest].pk],
                                            "note": "x"}),
        ("/admin/devices/device/bulk-block/", {"device_ids": "DEV_ML", "reason": "x"}),
        (f"/admin/bundles/bundle/{ml[Bundle].pk}/review/", {"approve": "1", "approve-note": "x"}),
        (f"/admin/bundles/bundle/{ml[Bundle].pk}/review/", {"reject": "1", "reject-reason_code": "confirmed_fraud"}),
        (f"/admin/policies/policy/{ml[Policy].pk}/change/", {"max_bundle_age_hours": "1", "change_note": "x"}),
    ]
    for url, data in attempts:
        client.post(url, {**data, "index": "0", "confirm": "yes"})

    assert Bundle.objects.get(pk=ml[Bundle].pk).status == "quarantined"
    assert Device.objects.get(pk=ml[Device].pk).status == "active"
    assert ChangeRequest.objects.get(pk=ml[ChangeRequest].pk).status == "pending"
    assert Policy.objects.get(pk=ml[Policy].pk).max_bundle_age_hours == 72
    assert not AuditLog.objects.filter(country="ML", actor="sn_reviewer@molam.test").exists()


def test_export_and_counts_exclude_other_country(two_countries, senegal_reviewer):
    client = client_for(senegal_reviewer)

    export = b"".join(client.get("/admin/audit/auditlog/export/").streaming_content).decode()
    assert "DEV_SN" in export
    assert "DEV_ML" not in export
    assert "reviewer_ML" not in export
    listing = client.get("/admin/audit/auditlog/")
    assert listing.context["cl"].result_count == AuditLog.objects.filter(country="SN").count()


def test_superuser_sees_every_country(two_countries, make_user):
    client = client_for(make_user("root", superuser=True))
    html = client.get("/admin/bundles/bundle/").content.decode()
    assert "bundle_dev_ml" in html
    assert "bundle_dev_sn" in html
    ml = two_countries["ML"]
    for url, model in ADMIN_PAGES.items():
        assert client.get(f"{url}{ml[model].pk}/change/").status_code == 200, url
    assert client.get(f"/admin/policies/policy/{ml[Policy].pk}/permissions/").status_code == 200
    assert client.get(f"/admin/bundles/bundle/{ml[Bundle].pk}/review/").status_code == 200


def test_reviewer_opens_every_detail_page(two_countries, senegal_reviewer):
    client = client_for(senegal_reviewer)
    sn = two_countries["SN"]
    for url, model in ADMIN_PAGES.items():
        assert client.get(f"{url}{sn[model].pk}/change/").status_code == 200, url
    # Granting countries is for superusers: guardian's page redirects everyone else.
    assert client.get(f"/admin/policies/policy/{sn[Policy].pk}/permissions/").status_code == 302


def test_grant_through_group_and_revoke(staff):
    group = Group.objects.create(name="ops_mali")
    user = staff("grouped", OPS, countries=[])
    assert allowed_countries(user) == frozenset()
    user.groups.add(group)
    grant_country(group, "ML")
    assert allowed_countries(type(user).objects.get(pk=user.pk)) == frozenset({"ML"})
    revoke_country(group, "ML")
    assert allowed_countries(type(user).objects.get(pk=user.pk)) == frozenset()


def test_user_without_country_sees_nothing(two_countries, staff):
    client = client_for(staff("nowhere", OPS, countries=[]))
    for url in ["/admin/bundles/bundle/", "/admin/devices/device/", "/admin/audit/auditlog/"]:
        assert list(client.get(url).context["cl"].result_list) == [], url


def test_grant_country_command(staff):
    from django.core.management import call_command
    from django.core.management.base import CommandError

    user = staff("cmd_user", OPS, countries=[])
    call_command("grant_country", "cmd_user", "sn", "ML")
    assert allowed_countries(type(user).objects.get(pk=user.pk)) == frozenset({"SN", "ML"})
    call_command("grant_country", "cmd_user", "ML", "--revoke")
    assert allowed_countries(type(user).objects.get(pk=user.pk)) == frozenset({"SN"})
    with pytest.raises(CommandError, match="No policy for ZZ"):
        call_command("grant_country", "cmd_user", "ZZ")
    with pytest.raises(CommandError, match="not found"):
        call_command("grant_country", "nobody", "SN")
