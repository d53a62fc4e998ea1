"""Celery application. Tasks are wake-up calls: PostgreSQL holds the work itself."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "molam_offline.settings")

app = Celery("molam_offline")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
