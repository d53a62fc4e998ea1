"""Middleware for the probe endpoints and the bundle push metrics."""

import time

from django.urls import reverse

from . import views
from .metrics import record_push

PROBE_VIEWS = {"/healthz": views.healthz, "/readyz": views.readyz, "/metrics": views.metrics}


class ProbeMiddleware:
    """Serve /healthz, /readyz and /metrics before host validation and sessions.

    Kubernetes probes and Prometheus address a pod by its IP address, which is not in
    ALLOWED_HOSTS, so these paths must not reach CommonMiddleware's host check.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        view = PROBE_VIEWS.get(request.path_info)
        if view is not None:
            return view(request)
        return self.get_response(request)


class PushMetricsMiddleware:
    """Count bundle push requests by response status and time them."""

    def __init__(self, get_response):
        self.get_response = get_response
        self.push_path = reverse("bundle-push")

    def __call__(self, request):
        if request.path_info != self.push_path or request.method != "POST":
            return self.get_response(request)
        started = time.monotonic()
        response = self.get_response(request)
        record_push(response.status_code, time.monotonic() - started)
        return response
