"""Rows that simulate the runbook's symptoms, written with the ORM as the product writes them."""

from datetime import timedelta
from itertools import count

from django.utils import timezone

from bundles.models import Bundle, BundleStatus
from reconciliation.models import QueueStatus, SyncQueueItem, WorkerHeartbeat

_numbers = count(1)


def make_bundles(n, status, *, reason_code="", rejected_reason=None, device_id="DEVICE_042", age=None,
                 push_attempts=1, country="SN"):
    """Insert `n` bundles; `age` moves their receive time into the past."""
    now = timezone.now()
    bundles = [Bundle(bundle_id=f"bundle_{next(_numbers):06d}", device_id=device_id, country=country, sequence=1,
                      status=status, reason_code=reason_code,
                      rejected_reason=rejected_reason or (f"{reason_code}: detail" if reason_code else None),
                      push_attempts=push_attempts, device_created_at=now, device_sent_at=now,
                      signature_alg="Ed25519", signature_value="x", content_hash="0" * 64, payload={})
               for _ in range(n)]
    created = Bundle.objects.bulk_create(bundles)
    if age is not None:
        Bundle.objects.filter(pk__in=[b.pk for b in created]).update(created_at=now - age, updated_at=now - age)
    return created


def reject(n, reason_code="clock_skew", **options):
    return make_bundles(n, BundleStatus.REJECTED, reason_code=reason_code, **options)


def accept(n, **options):
    return make_bundles(n, BundleStatus.ACCEPTED, **options)


def queue(bundles, *, age=None, status=QueueStatus.PENDING):
    now = timezone.now()
    items = SyncQueueItem.objects.bulk_create(SyncQueueItem(bundle=bundle, status=status) for bundle in bundles)
    if age is not None:
        SyncQueueItem.objects.filter(pk__in=[i.pk for i in items]).update(created_at=now - age)
    return items


def heartbeat(worker_name, *, age, error=""):
    now = timezone.now()
    return WorkerHeartbeat.objects.update_or_create(worker_name=worker_name, defaults={
        "hostname": "worker-host", "last_run_at": now - age, "last_success_at": now - age, "last_error": error})[0]


def clear_bundles():
    SyncQueueItem.objects.all().delete()
    Bundle.objects.all().delete()


def minutes(value):
    return timedelta(minutes=value)
