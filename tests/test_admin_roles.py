import pytest
from django.contrib.auth.models import Group

from molam_offline.roles import ENGINEER, FRAUD, OPS, PAY_ADMIN, ROLE_PERMISSIONS
from tests.backoffice import client_for, make_bundle, staff  # noqa: F401  (fixtures)

pytestmark = pytest.mark.django_db


def test_groups_hold_exactly_their_permissions():
    for role, expected in ROLE_PERMISSIONS.items():
        group = Group.objects.get(name=role)
        held = {f"{p.content_type.app_label}.{p.codename}" for p in group.permissions.select_related("content_type")}
        assert held == set(expected), role


@pytest.mark.parametrize("role,allowed", [
    (OPS, {"review_bundle", "requeue_bundle", "export_auditlog"}),
    (FRAUD, {"review_bundle", "block_device", "export_auditlog"}),
    (ENGINEER, {"requeue_bundle"}),
    (PAY_ADMIN, {"block_device", "replace_device_key", "change_policy", "requeue_bundle"}),
])
def test_role_action_permissions(staff, role, allowed):
    user = staff(f"user_{role}", role)
    actions = {"review_bundle": "bundles.review_bundle", "requeue_bundle": "bundles.requeue_bundle",
               "block_device": "devices.block_device", "replace_device_key": "devices.replace_device_key",
               "change_policy": "policies.change_policy", "export_auditlog": "audit.export_auditlog",
               "review_country": "policies.review_country"}
    held = {name for name, permission in actions.items() if user.has_perm(permission)}
    assert held == allowed


@pytest.mark.parametrize("role,visible,hidden", [
    (OPS, ["approve_selected", "reject_selected", "requeue_selected"], []),
    (FRAUD, ["approve_selected", "reject_selected"], ["requeue_selected"]),
    (ENGINEER, ["requeue_selected"], ["approve_selected", "reject_selected"]),
])
def test_bundle_actions_offered_per_role(staff, make_bundle, role, visible, hidden):
    make_bundle()
    html = client_for(staff(f"user_{role}", role)).get("/admin/bundles/bundle/").content.decode()
    for action in visible:
        assert f'value="{action}"' in html, action
    for action in hidden:
        assert f'value="{action}"' not in html, action


def test_device_actions_offered_per_role(staff, make_bundle):
    make_bundle()
    fraud = client_for(staff("fraud", FRAUD)).get("/admin/devices/device/").content.decode()
    ops = client_for(staff("ops", OPS)).get("/admin/devices/device/").content.decode()
    assert 'value="block_selected"' in fraud
    assert 'value="block_selected"' not in ops
