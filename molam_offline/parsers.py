"""Request body parsers for the DRF endpoints."""

import json

from django.conf import settings
from django.utils.translation import gettext as _
from rest_framework import renderers, status
from rest_framework.exceptions import APIException, ParseError
from rest_framework.parsers import BaseParser


class PayloadTooLargeError(APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "too_large"


class BoundedJSONParser(BaseParser):
    """Parse a strict JSON body of at most settings.API_MAX_BODY_BYTES, checked before reading.

    It is not a JSONParser subclass on purpose: DRF reads the whole request.body for those
    (limited only by DATA_UPLOAD_MAX_MEMORY_SIZE, which returns 400), while this parser gets
    the stream, checks the declared Content-Length, and reads at most one byte past the limit.
    """

    media_type = "application/json"
    renderer_class = renderers.JSONRenderer

    def parse(self, stream, media_type=None, parser_context=None):
        limit = settings.API_MAX_BODY_BYTES
        request = (parser_context or {}).get("request")
        declared = request.META.get("CONTENT_LENGTH", "") if request is not None else ""
        if declared.isdigit() and int(declared) > limit:
            raise _too_large(int(declared), limit)

        body = stream.read(limit + 1) if stream is not None else b""
        if len(body) > limit:
            raise _too_large(len(body), limit)

        try:
            return json.loads(body.decode("utf-8"), parse_constant=_reject_constant)
        except UnicodeDecodeError:
            raise ParseError(_("The body is not valid UTF-8.")) from None
        except RecursionError:
            raise ParseError(_("JSON parse error: nesting is too deep.")) from None
        except ValueError as error:
            raise ParseError(_("JSON parse error: %(error)s.") % {"error": error}) from None


def _reject_constant(value):
    raise ValueError(f"{value} is not a JSON number")


def _too_large(size: int, limit: int) -> PayloadTooLargeError:
    return PayloadTooLargeError(_("The request body is %(size)d bytes; the limit is %(limit)d bytes.")
                                % {"size": size, "limit": limit})
