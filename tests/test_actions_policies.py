from decimal import Decimal

import pytest
from django.core.exceptions import PermissionDenied

from audit.models import AuditLog
from molam_offline.actions import ActionRefused, NotFound
from molam_offline.roles import OPS, PAY_ADMIN
from policies import actions
from policies.models import ChangeRequest, Policy
from tests.backoffice import staff  # noqa: F401  (fixture)

pytestmark = pytest.mark.django_db


@pytest.fixture
def senegal():
    return Policy.objects.get(country="SN")


def test_lowering_a_limit_applies_at_once(staff, senegal):
    admin = staff("admin1", PAY_ADMIN)

    outcome = actions.change_policy(acting_user=admin, policy_pk=senegal.pk, note="fraud wave",
                                    changes={"max_offline_per_device_per_day": 20})

    assert outcome.applied
    senegal.refresh_from_db()
    assert senegal.max_offline_per_device_per_day == 20
    assert senegal.updated_by == admin
    row = AuditLog.objects.get(action="policy_changed", country="SN")
    assert row.old_values == {"max_offline_per_device_per_day": 50}
    assert row.new_values == {"max_offline_per_device_per_day": 20}


def test_raising_a_limit_needs_second_approver(staff, senegal):
    first, second = staff("admin1", PAY_ADMIN), staff("admin2", PAY_ADMIN)

    outcome = actions.change_policy(acting_user=first, policy_pk=senegal.pk, note="harvest season",
                                    changes={"max_offline_per_device_per_day": 100,
                                             "max_amount_per_device_per_day": Decimal("900000")})

    assert not outcome.applied
    senegal.refresh_from_db()
    assert senegal.max_offline_per_device_per_day == 50
    request = outcome.change_request
    assert request.new_values == {"max_amount_per_device_per_day": "900000", "max_offline_per_device_per_day": 100}
    with pytest.raises(ActionRefused, match="yourself"):
        actions.approve_change_request(acting_user=first, change_request_pk=request.pk)

    actions.approve_change_request(acting_user=second, change_request_pk=request.pk, note="agreed")

    senegal.refresh_from_db()
    assert senegal.max_offline_per_device_per_day == 100
    assert senegal.max_amount_per_device_per_day == Decimal("900000")
    assert ChangeRequest.objects.get(pk=request.pk).decided_by == second
    rows = list(AuditLog.objects.filter(country="SN").order_by("id").values_list("action", "actor"))
    assert rows == [("change_requested", "admin1@molam.test"), ("policy_changed", "admin2@molam.test"),
                    ("change_approved", "admin2@molam.test")]
    with pytest.raises(ActionRefused, match="already approved and applied by admin2"):
        actions.approve_change_request(acting_user=staff("admin3", PAY_ADMIN), change_request_pk=request.pk)


def test_stale_request_is_refused(staff, senegal):
    first, second = staff("admin1", PAY_ADMIN), staff("admin2", PAY_ADMIN)
    request = actions.change_policy(acting_user=first, policy_pk=senegal.pk, note="raise",
                                    changes={"max_bundle_age_hours": 120}).change_request
    actions.change_policy(acting_user=second, policy_pk=senegal.pk, note="tighten",
                          changes={"max_bundle_age_hours": 48})

    with pytest.raises(ActionRefused, match="changed since the request"):
        actions.approve_change_request(acting_user=second, change_request_pk=request.pk)
    senegal.refresh_from_db()
    assert senegal.max_bundle_age_hours == 48


def test_reject_change_request(staff, senegal):
    first, second = staff("admin1", PAY_ADMIN), staff("admin2", PAY_ADMIN)
    request = actions.change_policy(acting_user=first, policy_pk=senegal.pk, note="raise",
                                    changes={"sira_quarantine_threshold": 95}).change_request

    actions.reject_change_request(acting_user=second, change_request_pk=request.pk, note="too risky")

    senegal.refresh_from_db()
    assert senegal.sira_quarantine_threshold == 80
    assert AuditLog.objects.filter(action="change_rejected", actor="admin2@molam.test").count() == 1


def test_policy_change_permissions(staff, senegal):
    with pytest.raises(PermissionDenied):
        actions.change_policy(acting_user=staff("ops", OPS), policy_pk=senegal.pk, note="x",
                              changes={"max_bundle_age_hours": 10})
    with pytest.raises(NotFound):
        actions.change_policy(acting_user=staff("admin_ml", PAY_ADMIN, countries=["ML"]), policy_pk=senegal.pk,
                              note="x", changes={"max_bundle_age_hours": 10})
    request = actions.change_policy(acting_user=staff("admin1", PAY_ADMIN), policy_pk=senegal.pk, note="x",
                                    changes={"max_bundle_age_hours": 100}).change_request
    with pytest.raises(PermissionDenied):
        actions.approve_change_request(acting_user=staff("ops2", OPS), change_request_pk=request.pk)
    with pytest.raises(NotFound):
        actions.approve_change_request(acting_user=staff("admin_ml2", PAY_ADMIN, countries=["ML"]),
                                       change_request_pk=request.pk)


def test_country_field_cannot_change(staff, senegal):
    with pytest.raises(ActionRefused, match="cannot be changed: country"):
        actions.change_policy(acting_user=staff("admin1", PAY_ADMIN), policy_pk=senegal.pk, note="x",
                              changes={"country": "ML"})
