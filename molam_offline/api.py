"""Shared API plumbing: the error format and the client address."""

from rest_framework.views import exception_handler as drf_exception_handler


def exception_handler(exc, context):
    """Answer DRF errors as {"detail": ..., "errors": [{"path", "message"}]}.

    Field errors keep their names as JSON paths ($.field), the same shape as the bundle
    push errors, so one client can read both.
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
    return response


def client_ip(request) -> str | None:
    """Return the address of the client as the first trusted hop sees it."""
    return request.META.get("REMOTE_ADDR") or None
