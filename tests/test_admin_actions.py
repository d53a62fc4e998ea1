"""Every back-office action through the real admin views, as logged-in users of each role."""

import csv
import threading
import io
from decimal import Decimal

import pytest
from django.contrib.messages import get_messages
from django.db import connection

from audit.models import AuditLog
from bundles.client import DeviceIdentity
from bundles.models import Bundle
from devices.models import Device
from molam_offline.roles import ENGINEER, FRAUD, OPS, PAY_ADMIN
from policies.models import ChangeRequest, Policy
from reconciliation.models import SyncQueueItem
from tests.backoffice import client_for, make_bundle, staff  # noqa: F401  (fixtures)

pytestmark = pytest.mark.django_db

BUNDLES = "/admin/bundles/bundle/"
DEVICES = "/admin/devices/device/"


def messages_of(response) -> list[str]:
    return [str(message) for message in get_messages(response.wsgi_request)]


def run_action(client, url, action, pks, **form):
    """Post an admin action, check its confirmation page, then confirm it with `form`."""
    selection = {"action": action, "_selected_action": [str(pk) for pk in pks], "index": "0"}
    page = client.post(url, selection)
    assert page.status_code == 200, page.content[:500]
    assert b'name="confirm"' in page.content
    return client.post(url, {**selection, "confirm": "yes", **form}, follow=True)


def test_approve_action_with_confirmation(staff, make_bundle):
    client = client_for(staff("ops", OPS))
    bundle = make_bundle(scores=[91, 10])

    response = run_action(client, BUNDLES, "approve_selected", [bundle.pk], note="False positive - verified")

    assert response.status_code == 200
    assert any("1 changed" in message for message in messages_of(response))
    bundle.refresh_from_db()
    assert bundle.status == "accepted"
    assert SyncQueueItem.objects.get(bundle=bundle).priority == 1
    row = AuditLog.objects.get(bundle_id=bundle.bundle_id, action="manual_approval")
    assert row.actor == "ops@molam.test"
    assert row.ip_address == "127.0.0.1"


def test_approve_action_without_note_changes_nothing(staff, make_bundle):
    client = client_for(staff("ops", OPS))
    bundle = make_bundle()

    response = client.post(BUNDLES, {"action": "approve_selected", "_selected_action": [str(bundle.pk)],
                                     "index": "0", "confirm": "yes", "note": ""})

    assert response.status_code == 200
    assert b"This field is required" in response.content
    bundle.refresh_from_db()
    assert bundle.status == "quarantined"
    assert not AuditLog.objects.filter(action="manual_approval").exists()


def test_reject_action_reports_skipped(staff, make_bundle):
    client = client_for(staff("fraud", FRAUD))
    quarantined = make_bundle()
    accepted = make_bundle(status="accepted")

    response = run_action(client, BUNDLES, "reject_selected", [quarantined.pk, accepted.pk],
                          reason_code="confirmed_fraud", note="stolen terminal")

    texts = messages_of(response)
    assert any("1 changed" in text and quarantined.bundle_id in text for text in texts)
    assert any("1 skipped" in text and accepted.bundle_id in text and "Accepted" in text for text in texts)
    quarantined.refresh_from_db()
    assert quarantined.rejected_reason == "confirmed_fraud: stolen terminal"


def test_reject_other_needs_note_in_form(staff, make_bundle):
    client = client_for(staff("ops", OPS))
    bundle = make_bundle()
    response = client.post(BUNDLES, {"action": "reject_selected", "_selected_action": [str(bundle.pk)],
                                     "index": "0", "confirm": "yes", "reason_code": "other", "note": ""})
    assert response.status_code == 200
    assert b"A note is required" in response.content
    assert Bundle.objects.get(pk=bundle.pk).status == "quarantined"


def test_requeue_action_for_engineer(staff, make_bundle):
    engineer = client_for(staff("engineer", ENGINEER))
    bundle = make_bundle(status="rejected", reason_code="unknown_device")
    Device.objects.filter(device_id=bundle.device_id).update(status="inactive")

    response = run_action(engineer, BUNDLES, "requeue_selected", [bundle.pk], note="device reactivated")

    assert any("Inactive" in text for text in messages_of(response))
    assert Bundle.objects.get(pk=bundle.pk).status == "rejected"


def test_engineer_has_no_review_actions(staff, make_bundle):
    client = client_for(staff("engineer", ENGINEER))
    bundle = make_bundle()

    page = client.get(BUNDLES)
    assert b"approve_selected" not in page.content
    assert b"requeue_selected" in page.content
    client.post(BUNDLES, {"action": "approve_selected", "_selected_action": [str(bundle.pk)], "index": "0",
                          "confirm": "yes", "note": "sneaky"})
    assert Bundle.objects.get(pk=bundle.pk).status == "quarantined"
    review = client.post(f"{BUNDLES}{bundle.pk}/review/", {"approve": "1", "approve-note": "sneaky"})
    assert review.status_code == 403


def test_review_page_shows_what_a_reviewer_needs(staff, make_bundle):
    client = client_for(staff("ops", OPS))
    make_bundle(status="accepted")
    bundle = make_bundle(amounts=["500", "99000", "1000"], scores=[12, 91, None], sira_reasons={
        1: [{"code": "velocity", "label": "Many payments in a short time", "weight": 40}, "new receiver"]})
    AuditLog.objects.create(action="bundle_quarantined", bundle_id=bundle.bundle_id, device_id=bundle.device_id,
                            country="SN", reason="high_fraud_score: fraud score 91")

    change_page = client.get(f"{BUNDLES}{bundle.pk}/change/").content.decode()
    assert f'href="{BUNDLES}{bundle.pk}/review/"' in change_page
    page = client.get(f"{BUNDLES}{bundle.pk}/review/")

    assert page.status_code == 200
    html = page.content.decode()
    positions = [html.index(f"tx-{bundle.sequence:04d}-{position}") for position in (1, 0, 2)]
    assert positions == sorted(positions), "transactions must be ordered by fraud score, highest first"
    assert "Many payments in a short time (code=velocity, weight=40)" in html
    assert "new receiver" in html
    assert 'id="activity"' in html
    assert "104500.00" in html  # today's total of the device's two bundles: 4000 + 100500
    assert str(Policy.objects.get(country="SN").four_eyes_amount_threshold) in html
    assert "bundle_dev_sn_0001" in html  # the device's other bundle
    assert "high_fraud_score: fraud score 91" in html
    assert 'name="approve-note"' in html
    assert 'name="reject-reason_code"' in html


def test_review_page_approve_and_second_reviewer(staff, make_bundle):
    first, second = client_for(staff("first", OPS)), client_for(staff("second", FRAUD))
    bundle = make_bundle(status="pending_review")
    url = f"{BUNDLES}{bundle.pk}/review/"

    response = first.post(url, {"approve": "1", "approve-note": "checked with merchant"}, follow=True)
    assert any("approved" in text for text in messages_of(response))
    late = second.post(url, {"reject": "1", "reject-reason_code": "confirmed_fraud", "reject-note": ""},
                       follow=True)

    assert any("already accepted by first" in text for text in messages_of(late))
    bundle.refresh_from_db()
    assert bundle.status == "accepted"
    assert not AuditLog.objects.filter(action="manual_rejection").exists()


def test_review_page_release_needs_second_reviewer(staff, make_bundle):
    Policy.objects.filter(country="SN").update(four_eyes_amount_threshold=Decimal("1000"))
    first, second = staff("first", OPS), staff("second", OPS)
    bundle = make_bundle()

    response = client_for(first).post(f"{BUNDLES}{bundle.pk}/review/", {"approve": "1", "approve-note": "ok"},
                                      follow=True)
    assert any("second reviewer" in text for text in messages_of(response))
    change = ChangeRequest.objects.get(bundle=bundle)

    own = run_action(client_for(first), "/admin/policies/changerequest/", "approve_selected", [change.pk], note="ok")
    assert any("yourself" in text for text in messages_of(own))
    assert Bundle.objects.get(pk=bundle.pk).status == "quarantined"

    run_action(client_for(second), "/admin/policies/changerequest/", "approve_selected", [change.pk], note="ok")
    assert Bundle.objects.get(pk=bundle.pk).status == "accepted"


def test_accept_too_old_from_review_page(staff, make_bundle):
    client = client_for(staff("ops", OPS))
    bundle = make_bundle(status="rejected", reason_code="bundle_too_old")

    client.post(f"{BUNDLES}{bundle.pk}/review/", {"approve": "1", "approve-note": "offline for 9 days"})

    bundle.refresh_from_db()
    assert bundle.status == "accepted"
    assert SyncQueueItem.objects.get(bundle=bundle).priority == 1


def test_block_action_with_quarantine(staff, make_bundle):
    client = client_for(staff("fraud", FRAUD))
    bundle = make_bundle(status="pending_review")
    device = Device.objects.get(device_id=bundle.device_id)

    run_action(client, DEVICES, "block_selected", [device.pk], reason="fraud ring", quarantine_bundles="on")

    device.refresh_from_db()
    assert device.status == "blocked"
    assert Bundle.objects.get(pk=bundle.pk).status == "quarantined"


def test_reactivate_and_deactivate_actions(staff, make_device):
    client = client_for(staff("admin2", PAY_ADMIN))
    make_device("DEV_SN")
    device = Device.objects.get(device_id="DEV_SN")

    run_action(client, DEVICES, "deactivate_selected", [device.pk], reason="returned")
    assert Device.objects.get(pk=device.pk).status == "inactive"
    run_action(client, DEVICES, "reactivate_selected", [device.pk], reason="back")
    assert Device.objects.get(pk=device.pk).status == "active"
    assert AuditLog.objects.filter(device_id="DEV_SN", actor="admin2@molam.test").count() == 2


def test_bulk_block_by_pasted_ids(staff, make_device):
    client = client_for(staff("fraud", FRAUD))
    for device_id in ["DEV_1", "DEV_2"]:
        make_device(device_id)
    make_device("DEV_ML", country="ML")

    page = client.get(f"{DEVICES}bulk-block/")
    assert page.status_code == 200
    response = client.post(f"{DEVICES}bulk-block/", {"device_ids": "DEV_1\nDEV_2, DEV_ML\nDEV_404",
                                                     "reason": "fraud ring 7"}, follow=True)

    texts = messages_of(response)
    assert any(text.startswith("2 changed") for text in texts)
    skipped = next(text for text in texts if "skipped" in text)
    assert "DEV_ML: Device DEV_ML not found." in skipped
    assert "DEV_404: Device DEV_404 not found." in skipped
    assert set(Device.objects.filter(status="blocked").values_list("device_id", flat=True)) == {"DEV_1", "DEV_2"}


def test_bulk_block_forbidden_for_ops(staff):
    assert client_for(staff("ops", OPS)).get(f"{DEVICES}bulk-block/").status_code == 403


def test_replace_key_view(staff, make_device):
    client = client_for(staff("admin2", PAY_ADMIN))
    make_device("DEV_SN")
    device = Device.objects.get(device_id="DEV_SN")
    new_key = DeviceIdentity(device_id="DEV_SN").pubkey_pem

    bad = client.post(f"{DEVICES}{device.pk}/replace-key/", {"pubkey_pem": "garbage", "reason": "reset"})
    assert bad.status_code == 200
    assert b"Invalid public key" in bad.content
    client.post(f"{DEVICES}{device.pk}/replace-key/", {"pubkey_pem": new_key, "reason": "reset"})

    device.refresh_from_db()
    assert device.pubkey_pem.strip() == new_key.strip()
    assert AuditLog.objects.filter(device_id="DEV_SN", action="device_key_replaced").count() == 1
    assert client_for(staff("fraud", FRAUD)).get(f"{DEVICES}{device.pk}/replace-key/").status_code == 403


def test_device_form_cannot_change_status(staff, make_device):
    client = client_for(staff("admin2", PAY_ADMIN))
    make_device("DEV_SN")
    device = Device.objects.get(device_id="DEV_SN")
    client.post(f"{DEVICES}{device.pk}/change/", {"status": "blocked", "pubkey_pem": "x"})
    device.refresh_from_db()
    assert device.status == "active"


def test_policy_raise_through_admin_waits_for_second_admin(staff):
    first, second = staff("admin1", PAY_ADMIN), staff("admin2", PAY_ADMIN)
    policy = Policy.objects.get(country="SN")
    form = {"currency": "XOF", "timezone": "Africa/Dakar", "max_offline_per_device_per_day": "100",
            "max_amount_per_device_per_day": "500000", "max_amount_per_transaction": "100000",
            "max_bundle_age_hours": "72", "max_clock_skew_minutes": "",
            "allowed_tx_types": ",".join(policy.allowed_tx_types), "sira_review_threshold": "60",
            "sira_quarantine_threshold": "80", "four_eyes_amount_threshold": "1000000", "is_active": "on",
            "change_note": "harvest season volume"}

    response = client_for(first).post(f"/admin/policies/policy/{policy.pk}/change/", form, follow=True)

    assert any("second approver" in text for text in messages_of(response)), messages_of(response)
    assert Policy.objects.get(pk=policy.pk).max_offline_per_device_per_day == 50
    change = ChangeRequest.objects.get(kind="policy_limit")
    ops = run_action(client_for(staff("ops", OPS)), "/admin/policies/changerequest/", "approve_selected",
                     [change.pk], note="not mine to approve")
    assert any("1 skipped" in text and "policies.change_policy" in text for text in messages_of(ops))
    assert Policy.objects.get(pk=policy.pk).max_offline_per_device_per_day == 50
    run_action(client_for(second), "/admin/policies/changerequest/", "approve_selected", [change.pk], note="ok")
    assert Policy.objects.get(pk=policy.pk).max_offline_per_device_per_day == 100


def test_audit_log_is_read_only_in_admin(staff, make_bundle):
    client = client_for(staff("ops", OPS))
    bundle = make_bundle()
    row = AuditLog.objects.create(action="bundle_quarantined", bundle_id=bundle.bundle_id, country="SN")

    assert client.get(f"/admin/audit/auditlog/{row.pk}/change/").status_code == 200
    client.post(f"/admin/audit/auditlog/{row.pk}/change/", {"actor": "someone else"})
    assert client.post(f"/admin/audit/auditlog/{row.pk}/delete/", {"post": "yes"}).status_code == 403
    assert client.get("/admin/audit/auditlog/add/").status_code == 403
    row.refresh_from_db()
    assert row.actor == "system"


def test_audit_search_by_bundle_device_actor(staff, make_bundle):
    client = client_for(staff("ops", OPS))
    bundle = make_bundle()
    AuditLog.objects.create(action="manual_rejection", bundle_id=bundle.bundle_id, device_id="DEV_SN",
                            actor="reviewer@molam.test", country="SN")
    AuditLog.objects.create(action="manual_rejection", bundle_id="bundle_other", device_id="DEV_X",
                            actor="other@molam.test", country="SN")

    for query in [bundle.bundle_id, "DEV_SN", "reviewer@molam"]:
        html = client.get("/admin/audit/auditlog/", {"q": query}).content.decode()
        assert "reviewer@molam.test" in html, query
        assert "other@molam.test" not in html, query


def test_audit_csv_export_of_weekly_rejections(staff, make_bundle):
    client = client_for(staff("fraud", FRAUD))
    bundle = make_bundle()
    AuditLog.objects.create(action="manual_rejection", bundle_id=bundle.bundle_id, country="SN",
                            actor="ops@molam.test", reason="=HYPERLINK(1)", old_values={"status": "quarantined"})
    AuditLog.objects.create(action="bundle_accepted", bundle_id="bundle_ok", country="SN")
    AuditLog.objects.create(action="manual_rejection", bundle_id="bundle_ml", country="ML")

    page = client.get("/admin/audit/auditlog/", {"rejections": "all"})
    assert b"Export as CSV" in page.content
    response = client.get("/admin/audit/auditlog/export/", {"rejections": "all"})

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert [row["bundle_id"] for row in rows] == [bundle.bundle_id]
    assert rows[0]["reason"] == "'=HYPERLINK(1)"
    assert rows[0]["old_values"] == '{"status": "quarantined"}'
    assert client_for(staff("engineer", ENGINEER)).get("/admin/audit/auditlog/export/").status_code == 403


@pytest.mark.django_db(transaction=True)
def test_two_reviewers_submit_review_page_at_once(staff, make_bundle):
    clients = {"alice": client_for(staff("alice", OPS)), "bob": client_for(staff("bob", FRAUD))}
    bundle = make_bundle(status="pending_review")
    url = f"{BUNDLES}{bundle.pk}/review/"
    barrier = threading.Barrier(2)
    texts, errors = {}, []

    def submit(name):
        try:
            barrier.wait(timeout=10)
            response = clients[name].post(url, {"approve": "1", "approve-note": f"checked by {name}"}, follow=True)
            texts[name] = messages_of(response)
        except Exception as error:  # an error in the view would surface here
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=submit, args=(name,)) for name in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    bundle.refresh_from_db()
    winner = bundle.reviewed_by.username
    loser = next(name for name in clients if name != winner)
    assert any("approved and queued" in text for text in texts[winner])
    assert any(f"already accepted by {winner}" in text for text in texts[loser])
    assert AuditLog.objects.filter(bundle_id=bundle.bundle_id, action="manual_approval").count() == 1
    assert SyncQueueItem.objects.filter(bundle=bundle).count() == 1
