"""Alert rules from the runbook's monitoring thresholds and escalation rules, sent once per incident.

`evaluate_alerts` runs every minute (Celery beat, or the quick start's periodic loop). A
rule that starts firing is announced once, by email through Django's email backend and,
when ALERT_WEBHOOK_URL is set, by a JSON POST; its resolution is announced once too.
"""

import json
import logging
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.utils import timezone, translation
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from audit.models import AuditAction
from audit.services import record
from molam_offline.models import AlertState, AlertStatus

from . import figures
from .thresholds import Level, get_thresholds

logger = logging.getLogger(__name__)

WEBHOOK_TIMEOUT_SECONDS = 10


@dataclass(frozen=True)
class Snapshot:
    """The figures every rule reads, computed once per evaluation."""

    now: datetime
    rate: figures.RejectionRate
    reasons: list[figures.ReasonRow]
    queue: figures.QueueFigure
    workers: list[figures.WorkerRow]
    review: figures.ReviewFigure
    confirmed_fraud: int


def take_snapshot(now: datetime | None = None) -> Snapshot:
    now = now or timezone.now()
    return Snapshot(now=now, rate=figures.rejection_rate(now=now), reasons=figures.rejection_reasons(now),
                    queue=figures.sync_queue_status(now), workers=figures.worker_heartbeats(now),
                    review=figures.review_backlog(now), confirmed_fraud=figures.confirmed_fraud_last_24h(now))


@dataclass(frozen=True)
class RuleResult:
    firing: bool
    summary: str = ""
    level: Level | None = None  # overrides the rule's level, for rules with a warning and an escalation line


@dataclass(frozen=True)
class AlertRule:
    name: str
    title: str
    level: Level
    evaluate: Callable[[Snapshot], RuleResult]


def _rejection_rate(snapshot: Snapshot) -> RuleResult:
    rate = snapshot.rate
    if rate.level == Level.OK:
        return RuleResult(False)
    thresholds = get_thresholds()
    threshold = (thresholds.rejection_rate_escalation if rate.level == Level.ESCALATION
                 else thresholds.rejection_rate_warning)
    return RuleResult(True, _("%(rejected)d of %(decided)d bundles decided in the last hour were rejected "
                              "(%(rate).1f%%, above the %(threshold).0f%% line).") % {
        "rejected": rate.rejected, "decided": rate.decided, "rate": rate.rate * 100, "threshold": threshold * 100},
        level=rate.level)


def _unknown_reason(snapshot: Snapshot) -> RuleResult:
    unknown = [row for row in snapshot.reasons if not row.known]
    if not unknown:
        return RuleResult(False)
    listed = ", ".join(f"{row.code or '(empty)'} ({row.count})" for row in unknown)
    return RuleResult(True, _("Bundles rejected in the last 24 hours with a reason code the product does not "
                              "know: %(reasons)s.") % {"reasons": listed})


def _confirmed_fraud(snapshot: Snapshot) -> RuleResult:
    count = snapshot.confirmed_fraud
    if not count:
        return RuleResult(False)
    return RuleResult(True, _("%(count)d bundles were rejected as confirmed fraud in the last 24 hours. "
                              "The security team handles these.") % {"count": count})


def _queue_backlog(snapshot: Snapshot) -> RuleResult:
    queue = snapshot.queue
    if queue.level == Level.OK:
        return RuleResult(False)
    return RuleResult(True, _("Sync queue: %(pending)d pending bundles, the oldest waiting %(age)s "
                              "(thresholds: %(max_size)d bundles, %(max_age)s).") % {
        "pending": queue.pending, "age": figures.format_duration(queue.oldest_pending_age),
        "max_size": get_thresholds().queue_size_max,
        "max_age": figures.format_duration(get_thresholds().queue_oldest_max)})


def _worker_stale(snapshot: Snapshot) -> RuleResult:
    stale = [worker for worker in snapshot.workers if worker.stale]
    if not stale:
        return RuleResult(False)
    listed = ", ".join(f"{worker.worker_name} ({figures.format_duration(worker.age)})" for worker in stale)
    return RuleResult(True, _("Reconciliation workers without a successful run for more than %(max_age)s: "
                              "%(workers)s.") % {
        "max_age": figures.format_duration(get_thresholds().worker_heartbeat_max_age), "workers": listed})


def _review_backlog(snapshot: Snapshot) -> RuleResult:
    review = snapshot.review
    if review.level == Level.OK:
        return RuleResult(False)
    return RuleResult(True, _("%(stuck)d bundles have waited in pending_review or quarantined for more than "
                              "%(after)s (threshold %(max)d).") % {
        "stuck": review.stuck, "after": figures.format_duration(get_thresholds().review_stuck_after),
        "max": get_thresholds().review_stuck_max})


RULES = [
    AlertRule("rejection_rate", gettext_lazy("High bundle rejection rate"), Level.WARNING, _rejection_rate),
    AlertRule("unknown_rejection_reason", gettext_lazy("Unknown rejection reason"), Level.ESCALATION,
              _unknown_reason),
    AlertRule("confirmed_fraud", gettext_lazy("Confirmed fraud detected"), Level.ESCALATION, _confirmed_fraud),
    AlertRule("sync_queue_backlog", gettext_lazy("Sync queue backlog"), Level.WARNING, _queue_backlog),
    AlertRule("worker_stale", gettext_lazy("Reconciliation worker stuck"), Level.ESCALATION, _worker_stale),
    AlertRule("review_backlog", gettext_lazy("Bundles stuck in review"), Level.WARNING, _review_backlog),
]
RULES_BY_NAME = {rule.name: rule for rule in RULES}


def evaluate_alerts(now: datetime | None = None) -> dict[str, str]:
    """Evaluate every rule, store its state and announce new and resolved incidents; return each rule's status."""
    now = now or timezone.now()
    statuses = {}
    with translation.override(alert_language()):
        snapshot = take_snapshot(now)
        for rule in RULES:
            state = _store_result(rule, rule.evaluate(snapshot), now)
            announce(state)
            statuses[rule.name] = state.status
    return statuses


def _store_result(rule: AlertRule, result: RuleResult, now: datetime) -> AlertState:
    level = (result.level or rule.level).name.lower()
    with transaction.atomic():
        AlertState.objects.get_or_create(rule=rule.name)
        state = AlertState.objects.select_for_update().get(rule=rule.name)
        old_values = {"status": state.status, "level": state.level}

        if result.firing and state.status == AlertStatus.OK:
            state.status, state.level, state.firing_since, state.resolved_at = AlertStatus.FIRING, level, now, None
            state.summary = result.summary
            logger.warning("Alert %s firing (%s): %s", rule.name, level, result.summary)
            record(AuditAction.ALERT_RAISED, details={"rule": rule.name}, reason=result.summary,
                   old_values=old_values, new_values={"status": state.status, "level": level})
        elif result.firing and LEVEL_ORDER[level] > LEVEL_ORDER.get(state.level, 0):
            # The running incident crossed a higher line: announced once more, at the new level.
            state.level, state.summary = level, result.summary
            logger.warning("Alert %s escalated to %s: %s", rule.name, level, result.summary)
            record(AuditAction.ALERT_RAISED, details={"rule": rule.name}, reason=result.summary,
                   old_values=old_values, new_values={"status": state.status, "level": level})
        elif result.firing:
            # Keep the running incident's figures current for the dashboard; a lower level
            # within the incident is not announced.
            state.summary = result.summary
        elif state.status == AlertStatus.FIRING:
            state.status, state.resolved_at = AlertStatus.OK, now
            logger.info("Alert %s resolved after %s", rule.name,
                        figures.format_duration(now - state.firing_since) if state.firing_since else "-")
            record(AuditAction.ALERT_RESOLVED, details={"rule": rule.name}, reason=state.summary,
                   old_values=old_values, new_values={"status": state.status, "level": state.level})

        state.last_evaluated_at = now
        state.save()
    return state


LEVEL_ORDER = {"": 0, "ok": 0, "warning": 1, "escalation": 2}


def notification_token(state: AlertState) -> str:
    """Return what a channel must have been sent for the state, for example "firing:warning:1796400000".

    The token names the incident by the Unix time it started or was resolved, so a new
    incident is announced even when the previous resolution could not be sent.
    """
    if state.status == AlertStatus.OK:
        return f"ok:{int(state.resolved_at.timestamp())}" if state.resolved_at else AlertStatus.OK
    return f"firing:{state.level}:{int(state.firing_since.timestamp())}"


def announce(state: AlertState) -> None:
    """Send each channel the state's status if it has not been sent yet; a failed send is retried next time."""
    rule = RULES_BY_NAME[state.rule]
    token = notification_token(state)
    for channel, send in (("email", _send_email), ("webhook", _send_webhook)):
        field = f"{channel}_notified_status"
        previous = getattr(state, field)
        if previous == token:
            continue

        # Claim the notification with a compare-and-set, so two evaluations running at
        # once (beat and a manual run) cannot both send it.
        claimed = AlertState.objects.filter(pk=state.pk, status=state.status, level=state.level,
                                            **{field: previous}).update(**{field: token,
                                                                           "last_notified_at": timezone.now()})
        if not claimed:
            continue
        try:
            send(rule, state)
        except Exception:  # Any transport error: give the claim back so the next evaluation retries.
            logger.exception("Sending alert %s (%s) by %s failed; retrying at the next evaluation", state.rule,
                             token, channel)
            AlertState.objects.filter(pk=state.pk, **{field: token}).update(**{field: previous})


def alert_language() -> str:
    return getattr(settings, "ALERT_LANGUAGE", "") or settings.LANGUAGE_CODE


def _message(rule: AlertRule, state: AlertState) -> tuple[str, str]:
    with translation.override(alert_language()):
        if state.status == AlertStatus.FIRING:
            verb = _("ESCALATE") if state.level == "escalation" else _("WARNING")
            subject = _("[Molam Offline] %(verb)s: %(title)s") % {"verb": verb, "title": rule.title}
            body = _("%(title)s\n\n%(summary)s\n\nFiring since %(since)s UTC. Run `manage.py bundle_status` and "
                     "`manage.py queue_status`, or open the admin dashboard, then follow docs/operations.md.") % {
                "title": rule.title, "summary": state.summary, "since": f"{state.firing_since:%Y-%m-%d %H:%M}"}
        else:
            subject = _("[Molam Offline] RESOLVED: %(title)s") % {"title": rule.title}
            body = _("%(title)s is resolved at %(resolved)s UTC.\n\nLast figures while firing: %(summary)s") % {
                "title": rule.title, "resolved": f"{state.resolved_at:%Y-%m-%d %H:%M}", "summary": state.summary}
    return subject, body


def _send_email(rule: AlertRule, state: AlertState) -> None:
    recipients = list(getattr(settings, "ALERT_EMAIL_RECIPIENTS", []))
    if not recipients:
        logger.info("Alert %s (%s) not emailed: ALERT_EMAIL_RECIPIENTS is empty", state.rule, state.status)
        return
    subject, body = _message(rule, state)
    send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, recipients)
    logger.info("Alert %s (%s) emailed to %d recipients", state.rule, state.status, len(recipients))


def _send_webhook(rule: AlertRule, state: AlertState) -> None:
    url = getattr(settings, "ALERT_WEBHOOK_URL", "")
    if not url:
        return
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise ValueError(f"ALERT_WEBHOOK_URL must be an http:// or https:// URL, not {url!r}")
    subject, body = _message(rule, state)
    payload = {
        "rule": state.rule,
        "status": "firing" if state.status == AlertStatus.FIRING else "resolved",
        "level": state.level,
        "title": str(rule.title),
        "summary": state.summary,
        "firing_since": state.firing_since.isoformat() if state.firing_since else None,
        "resolved_at": state.resolved_at.isoformat() if state.resolved_at else None,
        # Chat tools that accept incoming webhooks (Slack, Mattermost) show this field.
        "text": f"{subject}\n{body}",
    }
    request = urllib.request.Request(url, data=json.dumps(payload).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=WEBHOOK_TIMEOUT_SECONDS) as response:
        if response.status >= 300:
            raise urllib.error.HTTPError(url, response.status, "webhook did not accept the alert", response.headers,
                                         None)
    logger.info("Alert %s (%s) sent to the webhook", state.rule, state.status)
