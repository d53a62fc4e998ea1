"""Shared API plumbing: the error format, the client address and database outages."""

import logging

from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.http import JsonResponse
from django.utils.translation import gettext as _
from rest_framework import status
from rest_framework.exceptions import ParseError
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from .parsers import PayloadTooLarge

logger = logging.getLogger(__name__)

# The errors Django raises when PostgreSQL is down, restarting or dropped the connection.
DATABASE_UNAVAILABLE_ERRORS = (OperationalError, InterfaceError)


def exception_handler(exc, context):
    """Format DRF errors as {"detail": ..., "errors": [{"path", "code", "message"}]}.

    Field errors keep their names as JSON paths ($.field), the same shape as the bundle
    push errors, so one client can read both. Errors about the whole body have the path $.
    A lost database connection is a 503 with Retry-After, not a 500.
    """
    if isinstance(exc, DATABASE_UNAVAILABLE_ERRORS):
        request = context.get("request")
        return Response(database_unavailable_body(exc, request), status=status.HTTP_503_SERVICE_UNAVAILABLE,
                        headers={"Retry-After": str(settings.DATABASE_UNAVAILABLE_RETRY_AFTER)})

    response = drf_exception_handler(exc, context)
    if response is None:
        return None

    data = response.data
    if isinstance(data, dict) and "detail" not in data:
        errors = []
        for name, messages in data.items():
            path = "$" if name == "non_field_errors" else f"$.{name}"
            for message in messages if isinstance(messages, list) else [messages]:
                errors.append({"path": path, "code": getattr(message, "code", "invalid"), "message": str(message)})
        response.data = {"detail": errors[0]["message"] if len(errors) == 1 else "Invalid input.",
                         "errors": errors}
    elif isinstance(exc, (ParseError, PayloadTooLarge)) and isinstance(data, dict):
        detail = data["detail"]
        data["errors"] = [{"path": "$", "code": getattr(detail, "code", "invalid"), "message": str(detail)}]
    return response


def database_unavailable_body(exc: Exception, request) -> dict:
    """Log a lost database connection and return the 503 response body."""
    path = getattr(request, "path", "?")
    # The exception class and first line only: psycopg messages name the server, never the password.
    first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    logger.warning("Database unavailable during %s %s: %s: %s", getattr(request, "method", "?"), path,
                   exc.__class__.__name__, first_line)
    message = _("The database is unavailable. Retry in %(seconds)d seconds.") % {
        "seconds": settings.DATABASE_UNAVAILABLE_RETRY_AFTER}
    return {"detail": message, "errors": [{"path": "$", "code": "database_unavailable", "message": message}]}


def database_unavailable_response(exc: Exception, request) -> JsonResponse:
    """Return the 503 response for views outside DRF, such as the admin."""
    response = JsonResponse(database_unavailable_body(exc, request), status=status.HTTP_503_SERVICE_UNAVAILABLE)
    response["Retry-After"] = str(settings.DATABASE_UNAVAILABLE_RETRY_AFTER)
    return response


def client_ip(request) -> str | None:
    """Return the client address from REMOTE_ADDR; behind a proxy, that is the proxy's address."""
    return request.META.get("REMOTE_ADDR") or None
