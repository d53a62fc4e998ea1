"""Celery application. A task message only wakes a worker up: the work itself is stored in PostgreSQL."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "molam_offline.settings")

app = Celery("molam_offline")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
