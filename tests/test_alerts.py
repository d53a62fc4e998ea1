"""Alert rules: one notification per incident by email and webhook, and one per resolution."""

import json
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.conf import settings
from django.core import mail
from django.db import connection

from audit.models import AuditAction, AuditLog
from bundles.models import Bundle, BundleStatus
from molam_offline.models import AlertState, AlertStatus
from molam_offline.monitoring.alerts import evaluate_alerts
from reconciliation.models import QueueStatus, SyncQueueItem, WorkerHeartbeat
from tests.monitoring_helpers import accept, heartbeat, make_bundles, queue, reject


class WebhookReceiver:
    """A local HTTP server on 127.0.0.1 that records each JSON POST and responds with `status_codes` in turn."""

    def __init__(self):
        self.payloads = []
        self.status_codes = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                code = receiver.status_codes.pop(0) if receiver.status_codes else 200
                if code == 200:
                    receiver.payloads.append(json.loads(body))
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/alerts"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhook(settings):
    with WebhookReceiver() as receiver:
        settings.ALERT_WEBHOOK_URL = receiver.url
        yield receiver


@pytest.fixture(autouse=True)
def alert_settings(settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.ALERT_EMAIL_RECIPIENTS = ["oncall@molam.test"]
    settings.ALERT_LANGUAGE = "en"


def rate_warning():
    accept(93)
    reject(7)


def rate_escalation():
    accept(85)
    reject(15)


def unknown_reason():
    reject(1, "made_up_reason")


def confirmed_fraud():
    reject(1, "confirmed_fraud")


def queue_size(settings):
    settings.MONITORING = {**settings.MONITORING, "QUEUE_SIZE_MAX": 5}
    queue(accept(6))


def queue_age():
    queue(accept(1), age=timedelta(minutes=61))


def worker_stuck():
    heartbeat("reconcile@worker-1", age=timedelta(minutes=31))


def review_stuck():
    make_bundles(11, BundleStatus.PENDING_REVIEW, age=timedelta(hours=5))


SYMPTOMS = [
    ("rate_warning", "rejection_rate", "warning", "WARNING: High bundle rejection rate"),
    ("rate_escalation", "rejection_rate", "escalation", "ESCALATE: High bundle rejection rate"),
    ("unknown_reason", "unknown_rejection_reason", "escalation", "ESCALATE: Unknown rejection reason"),
    ("confirmed_fraud", "confirmed_fraud", "escalation", "ESCALATE: Confirmed fraud detected"),
    ("queue_size", "sync_queue_backlog", "warning", "WARNING: Sync queue backlog"),
    ("queue_age", "sync_queue_backlog", "warning", "WARNING: Sync queue backlog"),
    ("worker_stuck", "worker_stale", "escalation", "ESCALATE: Reconciliation worker stuck"),
    ("review_stuck", "review_backlog", "warning", "WARNING: Bundles stuck in review"),
]


def simulate(name, settings):
    function = globals()[name]
    if name == "queue_size":
        function(settings)
    else:
        function()


def resolve():
    from django.utils import timezone

    SyncQueueItem.objects.update(status=QueueStatus.DONE)
    Bundle.objects.filter(status__in=[BundleStatus.REJECTED, BundleStatus.PENDING_REVIEW]).update(
        status=BundleStatus.ACCEPTED, reason_code="")
    WorkerHeartbeat.objects.update(last_success_at=timezone.now())


@pytest.mark.django_db
@pytest.mark.parametrize("symptom, rule, level, subject", SYMPTOMS, ids=[s[0] for s in SYMPTOMS])
def test_symptom_alerts_once_and_resolves_once(symptom, rule, level, subject, settings, webhook):
    simulate(symptom, settings)

    for _ in range(3):
        statuses = evaluate_alerts()

    assert statuses[rule] == AlertStatus.FIRING
    assert [m.subject for m in mail.outbox] == [f"[Molam Offline] {subject}"]
    assert mail.outbox[0].to == ["oncall@molam.test"]
    assert [(p["rule"], p["status"], p["level"]) for p in webhook.payloads] == [(rule, "firing", level)]
    assert AlertState.objects.get(rule=rule).firing_since is not None

    resolve()
    for _ in range(2):
        evaluate_alerts()

    resolved_subject = f"[Molam Offline] RESOLVED: {subject.split(': ', 1)[1]}"
    assert [m.subject for m in mail.outbox][1:] == [resolved_subject]
    assert [(p["rule"], p["status"]) for p in webhook.payloads][1:] == [(rule, "resolved")]
    assert AuditLog.objects.filter(action=AuditAction.ALERT_RAISED, details__rule=rule).count() == 1
    assert AuditLog.objects.filter(action=AuditAction.ALERT_RESOLVED, details__rule=rule).count() == 1


@pytest.mark.django_db
def test_fraud_confirmed_on_old_bundle(webhook):
    from django.utils import timezone

    bundle = make_bundles(1, BundleStatus.QUARANTINED, age=timedelta(days=3))[0]
    evaluate_alerts()
    Bundle.objects.filter(pk=bundle.pk).update(status=BundleStatus.REJECTED, reason_code="confirmed_fraud",
                                               updated_at=timezone.now())

    evaluate_alerts()

    assert [(p["rule"], p["status"]) for p in webhook.payloads] == [("confirmed_fraud", "firing")]


@pytest.mark.django_db
def test_no_alert_when_healthy(webhook):
    accept(50)
    reject(1)
    heartbeat("reconcile@worker-1", age=timedelta(minutes=2))

    statuses = evaluate_alerts()

    assert set(statuses.values()) == {AlertStatus.OK}
    assert mail.outbox == []
    assert webhook.payloads == []


@pytest.mark.django_db
def test_rate_escalates_once_within_incident(webhook):
    accept(93)
    reject(7)
    evaluate_alerts()
    reject(8)  # 15 of 108: above 10%
    evaluate_alerts()
    evaluate_alerts()
    accept(100)  # 15 of 208: back between 5% and 10%
    evaluate_alerts()

    assert [p["level"] for p in webhook.payloads] == ["warning", "escalation"]
    assert len(mail.outbox) == 2
    assert mail.outbox[1].subject == "[Molam Offline] ESCALATE: High bundle rejection rate"


@pytest.mark.django_db
def test_failed_webhook_retried_without_second_email(webhook):
    webhook.status_codes = [500]
    unknown_reason()

    evaluate_alerts()
    assert webhook.payloads == []
    assert len(mail.outbox) == 1

    evaluate_alerts()
    assert [p["rule"] for p in webhook.payloads] == ["unknown_rejection_reason"]
    assert len(mail.outbox) == 1


@pytest.mark.django_db
def test_new_incident_after_unsent_resolution(settings, webhook):
    from django.utils import timezone

    settings.ALERT_EMAIL_RECIPIENTS = []
    start = timezone.now()
    bundle = reject(1, "made_up_reason")[0]
    evaluate_alerts(start)
    Bundle.objects.filter(pk=bundle.pk).update(status=BundleStatus.ACCEPTED)
    webhook.status_codes = [500]  # the resolution is not delivered
    evaluate_alerts(start + timedelta(minutes=1))
    Bundle.objects.filter(pk=bundle.pk).update(status=BundleStatus.REJECTED)

    evaluate_alerts(start + timedelta(minutes=2))

    assert [p["status"] for p in webhook.payloads] == ["firing", "firing"]


@pytest.mark.django_db
def test_email_body_names_figures(settings):
    settings.ALERT_WEBHOOK_URL = ""
    rate_escalation()

    evaluate_alerts()

    body = mail.outbox[0].body
    assert "15 of 100 bundles decided in the last hour were rejected (15.0%, above the 10% line)." in body
    assert "manage.py bundle_status" in body


@pytest.mark.django_db
def test_no_recipients_sends_webhook_only(settings, webhook):
    settings.ALERT_EMAIL_RECIPIENTS = []
    unknown_reason()

    evaluate_alerts()

    assert mail.outbox == []
    assert len(webhook.payloads) == 1


def test_concurrent_evaluations_notify_once(transactional_db, webhook):
    unknown_reason()
    barrier = threading.Barrier(2)
    errors = []

    def run():
        try:
            barrier.wait(timeout=10)
            evaluate_alerts()
        except Exception as error:  # reported by the assert below
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    assert len(mail.outbox) == 1
    assert [p["rule"] for p in webhook.payloads] == ["unknown_rejection_reason"]


@pytest.mark.django_db
def test_periodic_round_evaluates_alerts():
    from molam_offline.periodic import run_periodic_once

    unknown_reason()

    run_periodic_once()

    assert AlertState.objects.get(rule="unknown_rejection_reason").status == AlertStatus.FIRING
    assert len(mail.outbox) == 1


def test_alert_task_on_beat_schedule():
    from molam_offline.celery import app

    app.loader.import_default_modules()

    assert settings.CELERY_BEAT_SCHEDULE["evaluate-alerts"]["task"] == "molam_offline.evaluate_alerts"
    assert "molam_offline.evaluate_alerts" in app.tasks


@pytest.mark.django_db
def test_pushed_bundles_raise_rate_alert(make_device, sample_bundle, push, client, make_user, webhook):
    """Signed bundles pushed through the API: unknown-device rejections show on every screen."""
    from io import StringIO

    from django.core.cache import cache
    from django.core.management import call_command

    from molam_offline.roles import OPS

    known = make_device("DEVICE_042")
    ghost = make_device("DEVICE_GHOST", register=False)
    for _ in range(20):
        assert push(known, sample_bundle(known, 1)).status_code == 202
    for _ in range(3):
        assert push(ghost, sample_bundle(ghost, 1)).status_code == 202
    decided = Bundle.objects.exclude(status=BundleStatus.RECEIVED).count()
    rejected = Bundle.objects.filter(status=BundleStatus.REJECTED).count()
    assert rejected / decided > 0.10  # the setup, not the behaviour under test

    evaluate_alerts()
    evaluate_alerts()

    assert [(p["rule"], p["level"]) for p in webhook.payloads] == [("rejection_rate", "escalation")]
    with pytest.raises(SystemExit) as exit_:
        call_command("bundle_status", stdout=StringIO())
    assert exit_.value.code == 2
    cache.clear()
    # The dashboard counts every country's bundles, so only a user who sees them all gets it.
    client.force_login(make_user("ops-user", role=OPS, superuser=True))
    html = client.get("/admin/").content.decode()
    assert "unknown_device" in html
    assert 'id="dashboard-alerts"' in html
    assert '<th title="rejection_rate">High bundle rejection rate</th>' in html


@pytest.mark.django_db
def test_alert_task_runs_rules():
    from molam_offline.tasks import evaluate_alerts_task

    unknown_reason()

    statuses = evaluate_alerts_task.apply().get()

    assert statuses["unknown_rejection_reason"] == AlertStatus.FIRING
    assert statuses["worker_stale"] == AlertStatus.OK
