"""The device simulator over real HTTP: invalid signature, clock skew, bundle too old, daily limit.

Each failure must end in the status and reason that the on-call runbook expects, and the
runbook's diagnosis query for it, run unchanged, must find the simulator's bundles and devices.
"""

import pytest
from django.db import connection

from audit.models import AuditAction
from bundles.simulator import Simulator
from devices.models import DeviceStatus
from devices.services import set_device_status

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def run_sql(sql, *params):
    with connection.cursor() as cursor:
        cursor.execute(sql, params or None)
        return cursor.fetchall()


def block(device_id):
    set_device_status(acting_user=None, device_id=device_id, new_status=DeviceStatus.BLOCKED,
                      reason="simulated stolen terminal", action=AuditAction.DEVICE_BLOCKED)


@pytest.fixture
def simulation(live_server, pay_admin_token):
    simulator = Simulator(live_server.url, pay_admin_token, run_id="T1")
    simulator.good_pushes()
    simulator.bad_signature()
    simulator.unregistered_device()
    simulator.blocked_device(block)
    simulator.clock_skew()
    simulator.old_bundle()
    simulator.daily_limit()
    return {outcome.scenario: outcome for outcome in simulator.outcomes}


def test_every_outcome_as_runbook_expects(simulation):
    mismatches = [(name, outcome.status, outcome.reason_code) for name, outcome in simulation.items()
                  if not outcome.as_expected]
    assert mismatches == []
    assert simulation["daily limit exceeded"].reason_code == "daily_limit_exceeded"


def test_invalid_signature_found(simulation):
    bad = simulation["invalid signature"]
    rejected = run_sql("""
SELECT bundle_id FROM offline_tx_bundles
WHERE status = 'rejected' AND rejected_reason LIKE '%invalid_signature%';
""")
    assert rejected == [(bad.bundle_id,)]

    def registration(device_id):
        return run_sql("""
SELECT
  device_id,
  status,
  created_at,
  last_seen_at
FROM offline_devices
WHERE device_id = %s;
""", device_id)

    assert registration(bad.device_id)[0][:2] == (bad.device_id, "active")
    assert registration(simulation["unregistered device"].device_id) == []
    assert registration(simulation["blocked device"].device_id)[0][1] == "blocked"


def test_clock_skew_found(simulation):
    rows = run_sql("""
SELECT
  bundle_id,
  device_id,
  rejected_reason
FROM offline_tx_bundles
WHERE rejected_reason LIKE '%clock skew%';
""")
    skew = simulation["clock skew"]
    assert [row[:2] for row in rows] == [(skew.bundle_id, skew.device_id)]
    assert "180 minutes ahead of the server clock" in rows[0][2]


def test_too_old_found(simulation):
    rows = run_sql("""
SELECT
  bundle_id,
  device_id,
  created_at,
  rejected_reason
FROM offline_tx_bundles
WHERE rejected_reason LIKE '%too old%'
ORDER BY created_at DESC;
""")
    old = simulation["bundle too old"]
    assert [row[:2] for row in rows] == [(old.bundle_id, old.device_id)]

    ages = run_sql("""
   SELECT
     local_id,
     amount,
     initiated_at,
     EXTRACT(EPOCH FROM (NOW() - initiated_at::timestamp))/3600 as age_hours
   FROM offline_transactions
   WHERE bundle_id = %s;
""", old.bundle_id)
    assert len(ages) == 3
    assert all(row[3] > 72 for row in ages)


def test_daily_limit_found(simulation):
    exceeded = simulation["daily limit exceeded"]
    rows = run_sql("""
SELECT bundle_id FROM offline_tx_bundles
WHERE status = 'rejected' AND rejected_reason LIKE '%daily limit exceeded%';
""")
    assert rows == [(exceeded.bundle_id,)]

    activity = run_sql("""
SELECT
  device_id,
  activity_date,
  total_amount,
  tx_count
FROM offline_device_activity
WHERE device_id = %s
  AND activity_date >= CURRENT_DATE - INTERVAL '7 days'
ORDER BY activity_date DESC;
""", exceeded.device_id)
    assert [(row[0], row[3]) for row in activity] == [(exceeded.device_id, 30)]

    policy = run_sql("SELECT max_offline_per_device_per_day FROM offline_policies WHERE country = 'SN';")
    assert policy == [(50,)]
