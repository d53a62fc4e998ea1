"""Shared API plumbing: the error format, strict JSON parsing and the client address."""

from django.conf import settings
from django.utils.translation import gettext_lazy as _
from rest_framework import status
from rest_framework.exceptions import APIException, ParseError
from rest_framework.parsers import BaseParser
from rest_framework.views import exception_handler as drf_exception_handler


class PayloadTooLarge(APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = _("The request body is too large.")
    default_code = "too_large"


class StrictJSONParser(BaseParser):
    """Parse JSON with the bundle parser's rules: a size limit, no duplicate keys, bounded nesting.

    DRF's JSONParser keeps the last of duplicate keys and lets deep nesting raise
    RecursionError, which would be a 500. DRF reads request.body for its JSONParser
    subclasses, and Django rejects an oversized request.body with an HTML 400, so this
    parser reads the stream itself and returns 413.
    """

    media_type = "application/json"

    def parse(self, stream, media_type=None, parser_context=None):
        from bundles.wire import BundleFormatError, decode_json

        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        body = stream.read(limit + 1) if stream is not None else b""
        if len(body) > limit:
            raise PayloadTooLarge(_("The request body is over the limit of %(limit)d bytes.") % {"limit": limit})

        try:
            return decode_json(body)
        except BundleFormatError as error:
            raise ParseError(error.errors[0]["message"], code=error.errors[0]["code"]) from None


def exception_handler(exc, context):
    """Answer DRF errors as {"detail": ..., "errors": [{"path", "code", "message"}]}.

    Field errors keep their names as JSON paths ($.field), the same shape as the bundle
    push errors, so one client can read both. Errors about the whole body have the path $.
    """
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


def client_ip(request) -> str | None:
    """Return the address of the client as the first trusted hop sees it."""
    return request.META.get("REMOTE_ADDR") or None
