"""Validation through a real broker: concurrent validations of one device, a real Celery worker,
and the sweep that recovers a lost task message.
"""

import signal
import threading
import time
from datetime import timedelta

import pytest
from django.db import connection, transaction

from bundles.client import encode, post_json
from bundles.models import Bundle, SequenceAnomaly
from bundles.simulator import SENEGAL_TIME_ZONE, one_local_day_window
from bundles.tasks import sweep_received_bundles
from bundles.validation import validate_bundle
from devices.models import Device, DeviceActivity
from molam_offline.celery import app as celery_app
from reconciliation.models import SyncQueueItem
from tests.processes import free_port, start_celery_worker, stop_process

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def use_broker(url: str | None) -> None:
    """Send this process's task messages to `url`, or run tasks in-process when it is None."""
    celery_app.conf.broker_url = url or ""
    celery_app.conf.task_always_eager = url is None
    # The producer pool keeps connections to the previous broker.
    celery_app._pool = None
    celery_app.amqp._producer_pool = None


@pytest.fixture
def celery_broker(redis_server):
    """Publish task messages to a real Redis; nothing consumes them unless a test starts a worker."""
    use_broker(redis_server.url)
    yield redis_server
    use_broker(None)


@pytest.fixture
def celery_worker(celery_broker, tmp_path):
    log_path = tmp_path / "worker.log"
    worker = start_celery_worker(celery_broker.url, log_path=log_path)
    yield worker
    stop_process(worker)
    if worker.returncode not in (0, -15):
        print(log_path.read_text(errors="replace")[-5000:])


def push_over_http(base_url, identity, bundle, sent_at):
    return post_json(f"{base_url}/offline/bundles", encode(identity.sign_for_push(bundle, sent_at=sent_at)))


def wait_for_status(bundle_id: str, statuses=("accepted", "rejected", "quarantined", "pending_review"),
                    timeout: float = 120) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = Bundle.objects.filter(bundle_id=bundle_id).values_list("status", flat=True).first()
        if status in statuses:
            return status
        time.sleep(0.25)
    raise TimeoutError(f"bundle {bundle_id} is still {status} after {timeout} seconds")


def payments(identity, count, *, start, spacing):
    return [identity.transaction(amount="1500", sender="+221770000001", receiver="+221770000002",
                                 initiated_at=start + i * spacing) for i in range(count)]


def test_two_bundles_race_daily_limit(celery_broker, make_device, live_server, now):
    device = make_device()
    start, end = one_local_day_window(now, SENEGAL_TIME_ZONE)
    spacing = (end - start) / 60
    bundles = [device.seal(payments(device, 30, start=start + 30 * i * spacing, spacing=spacing), created_at=end)
               for i in range(2)]
    for bundle in bundles:
        code, answer = push_over_http(live_server.url, device, bundle, now)
        assert code == 202, answer
        assert answer["status"] == "received"  # No worker consumes the message.
    keys = list(Bundle.objects.order_by("pk").values_list("pk", flat=True))
    barrier = threading.Barrier(2)
    results = {}

    def validate(bundle_pk):
        connection.ensure_connection()  # Connect first, so that both validations start together.
        barrier.wait()
        try:
            results[bundle_pk] = validate_bundle(bundle_pk)
        finally:
            connection.close()

    threads = [threading.Thread(target=validate, args=(bundle_pk,)) for bundle_pk in keys]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(results.values()) == ["accepted", "rejected"]
    rejected = Bundle.objects.get(status="rejected")
    assert rejected.reason_code == "daily_limit_exceeded"
    accepted = Bundle.objects.get(status="accepted")
    activity = DeviceActivity.objects.get(device_id=device.device_id)
    assert activity.tx_count == accepted.tx_count == 30
    assert activity.total_amount == accepted.total_amount
    assert SyncQueueItem.objects.get().bundle_id == accepted.bundle_id


def test_concurrent_validation_tracks_sequences(celery_broker, make_device, sample_bundle, live_server, now,
                                                no_fraud_scoring):
    device = make_device()
    bundles = [sample_bundle(device, 1, sequence=number) for number in (1, 2, 4, 5, 6, 3)]
    for bundle in bundles:
        code, answer = push_over_http(live_server.url, device, bundle, now)
        assert code == 202, answer
    keys = list(Bundle.objects.values_list("pk", flat=True))
    barrier = threading.Barrier(len(keys))

    def validate(bundle_pk):
        connection.ensure_connection()
        barrier.wait()
        try:
            validate_bundle(bundle_pk)
        finally:
            connection.close()

    threads = [threading.Thread(target=validate, args=(bundle_pk,)) for bundle_pk in keys]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert set(Bundle.objects.values_list("status", flat=True)) == {"accepted"}
    row = Device.objects.get(device_id=device.device_id)
    assert row.max_sequence_seen == 6
    assert row.missing_sequence_count == 0
    assert not SequenceAnomaly.objects.filter(resolved_at__isnull=True).exists()


def test_concurrent_http_pushes_store_one_bundle(celery_broker, make_device, sample_bundle, live_server, now):
    device = make_device()
    bundle = sample_bundle(device, 3)
    bodies = [encode(device.sign_for_push(bundle, sent_at=now + timedelta(seconds=i))) for i in range(20)]
    barrier = threading.Barrier(len(bodies))
    codes = []

    def send(body):
        barrier.wait()
        codes.append(post_json(f"{live_server.url}/offline/bundles", body)[0])

    threads = [threading.Thread(target=send, args=(body,)) for body in bodies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(codes) == [200] * 19 + [202]
    row = Bundle.objects.get()
    assert row.push_attempts == 20
    assert row.status == "received"


def test_worker_validates_pushed_bundle(celery_worker, make_device, sample_bundle, live_server, now):
    device = make_device()
    bundle = sample_bundle(device, 3)

    code, answer = push_over_http(live_server.url, device, bundle, now)

    assert code == 202, answer
    assert wait_for_status(bundle["bundle_id"]) == "accepted"
    row = Bundle.objects.get(bundle_id=bundle["bundle_id"])
    assert row.validation_attempts == 1
    assert SyncQueueItem.objects.filter(bundle=row).count() == 1
    assert DeviceActivity.objects.get(device_id=device.device_id).tx_count == 3


def test_sweep_recovers_lost_message(redis_server, make_device, sample_bundle, live_server, now, tmp_path):
    device = make_device()
    bundle = sample_bundle(device, 2)
    # Nothing listens on this port: the push commits, and its task message is lost.
    use_broker(f"redis://127.0.0.1:{free_port()}/0")
    try:
        code, answer = push_over_http(live_server.url, device, bundle, now)
    finally:
        use_broker(redis_server.url)
    assert code == 202, answer
    assert Bundle.objects.get(bundle_id=bundle["bundle_id"]).status == "received"

    worker = start_celery_worker(redis_server.url, log_path=tmp_path / "worker.log")
    try:
        # As Celery beat would send it; the worker runs the sweep, then the validation.
        sweep_received_bundles.delay(0)
        status = wait_for_status(bundle["bundle_id"])
    finally:
        stop_process(worker)
        use_broker(None)

    assert status == "accepted"
    assert Bundle.objects.get(bundle_id=bundle["bundle_id"]).validation_attempts == 1


def test_killed_worker_loses_nothing(celery_broker, make_device, sample_bundle, live_server, now, tmp_path):
    device = make_device()
    bundle = sample_bundle(device, 2)
    code, answer = push_over_http(live_server.url, device, bundle, now)
    assert code == 202, answer
    with transaction.atomic():
        # Holding the bundle's row lock stops the worker inside the validation, where it is killed.
        Bundle.objects.select_for_update().get(bundle_id=bundle["bundle_id"])
        worker = start_celery_worker(celery_broker.url, pool="solo", log_path=tmp_path / "killed.log")
        try:
            wait_for_lock_waiters(1)
            worker.send_signal(signal.SIGKILL)
            worker.wait(timeout=30)
        finally:
            stop_process(worker)
    # The dead worker's database session gets the lock now, fails to send its result to
    # the gone client, and rolls back.
    wait_for_lock_waiters(0)
    assert Bundle.objects.get(bundle_id=bundle["bundle_id"]).status == "received"

    second = start_celery_worker(celery_broker.url, log_path=tmp_path / "second.log")
    try:
        # The killed task's message is redelivered only after the broker's visibility
        # timeout, so the sweep brings the bundle back first.
        sweep_received_bundles.delay(0)
        status = wait_for_status(bundle["bundle_id"])
    finally:
        stop_process(second)

    assert status == "accepted"
    assert Bundle.objects.get(bundle_id=bundle["bundle_id"]).validation_attempts == 1


def wait_for_lock_waiters(expected: int, timeout: float = 120) -> None:
    """Wait until `expected` other database sessions are waiting for a lock."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with connection.cursor() as cursor:
            # Inside a transaction PostgreSQL keeps returning its first snapshot of the view.
            cursor.execute("SELECT pg_stat_clear_snapshot()")
            cursor.execute("SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() "
                           "AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()")
            waiting = cursor.fetchone()[0]
        if waiting == expected:
            return
        time.sleep(0.2)
    raise TimeoutError(f"{waiting} sessions wait for a lock after {timeout} seconds, expected {expected}")
