from django.db import models
from django.db.models.functions import Now
from django.utils.translation import gettext_lazy as _


class AlertStatus(models.TextChoices):
    OK = "ok", _("OK")
    FIRING = "firing", _("Firing")


class AlertState(models.Model):
    """The current incident of one alert rule, and the status last sent to each notification channel.

    A channel is notified when the state's notification token (status, level and the
    time the incident started or was resolved) differs from its `*_notified_status`, so
    each incident is announced once when it starts and once when it is resolved.
    """

    rule = models.CharField(_("rule"), max_length=64, unique=True)
    status = models.CharField(_("status"), max_length=16, choices=AlertStatus.choices, default=AlertStatus.OK,
                              db_default=AlertStatus.OK)
    level = models.CharField(_("level"), max_length=16, blank=True, default="", db_default="")
    summary = models.TextField(_("summary"), blank=True, default="", db_default="")
    firing_since = models.DateTimeField(_("firing since"), null=True, blank=True)
    resolved_at = models.DateTimeField(_("resolved at"), null=True, blank=True)
    email_notified_status = models.CharField(_("status last emailed"), max_length=32, default=AlertStatus.OK,
                                             db_default=AlertStatus.OK)
    webhook_notified_status = models.CharField(_("status last sent to the webhook"), max_length=32,
                                               default=AlertStatus.OK, db_default=AlertStatus.OK)
    last_notified_at = models.DateTimeField(_("last notified at"), null=True, blank=True)
    last_evaluated_at = models.DateTimeField(_("last evaluated at"), null=True, blank=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True, db_default=Now())

    class Meta:
        db_table = "offline_alert_states"
        verbose_name = _("alert state")
        verbose_name_plural = _("alert states")
        ordering = ["rule"]

    def __str__(self):
        return f"{self.rule} ({self.status})"
