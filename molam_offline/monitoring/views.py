"""Liveness, readiness and metrics endpoints for Kubernetes probes and Prometheus."""

import hmac
import logging

from django.conf import settings
from django.db import DatabaseError, connection
from django.http import HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from prometheus_client import CONTENT_TYPE_LATEST

from .metrics import render_metrics

logger = logging.getLogger(__name__)

BROKER_TIMEOUT_SECONDS = 2


@never_cache
def healthz(request):
    """Return 200 while the process serves requests. Nothing else is checked, so a database outage restarts no pod."""
    return JsonResponse({"status": "ok"})


@never_cache
def readyz(request):
    """Return 200 when PostgreSQL and the Celery broker (if one is configured) are reachable, else 503."""
    checks = {"database": _check_database(), "broker": _check_broker()}
    ready = all(value in ("ok", "not configured") for value in checks.values())
    return JsonResponse({"status": "ready" if ready else "not ready", **checks}, status=200 if ready else 503)


def _check_database() -> str:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return "ok"
    except DatabaseError as error:
        logger.error("Readiness check: database unreachable: %s", error)
        return f"unreachable ({type(error).__name__})"


def _check_broker() -> str:
    url = settings.CELERY_BROKER_URL
    if not url:
        return "not configured"
    from kombu import Connection

    try:
        with Connection(url, connect_timeout=BROKER_TIMEOUT_SECONDS) as broker:
            broker.ensure_connection(max_retries=1, timeout=BROKER_TIMEOUT_SECONDS)
        return "ok"
    except Exception as error:  # kombu raises transport-specific errors (OperationalError, socket errors).
        logger.error("Readiness check: broker unreachable: %s", error)
        return f"unreachable ({type(error).__name__})"


@never_cache
def metrics(request):
    """Serve the Prometheus metrics; with METRICS_BEARER_TOKEN set, only to requests that send that token."""
    token = getattr(settings, "METRICS_BEARER_TOKEN", "")
    if token:
        sent = request.headers.get("Authorization", "")
        if not hmac.compare_digest(sent.encode(), f"Bearer {token}".encode()):
            return HttpResponse("Missing or invalid bearer token for /metrics.\n", status=401,
                                content_type="text/plain")
    return HttpResponse(render_metrics(), content_type=CONTENT_TYPE_LATEST)
