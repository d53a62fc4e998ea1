"""Request body parsers for the DRF endpoints."""

import io

from django.conf import settings
from django.utils.translation import gettext as _
from rest_framework import status
from rest_framework.exceptions import APIException, ParseError
from rest_framework.parsers import JSONParser


class PayloadTooLargeError(APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "too_large"


class BoundedJSONParser(JSONParser):
    """Parse a JSON body of at most settings.API_MAX_BODY_BYTES, checked before decoding.

    The stream is read directly by DRF, so Django's DATA_UPLOAD_MAX_MEMORY_SIZE does not
    apply: the declared Content-Length and the bytes actually read are both checked here.
    """

    def parse(self, stream, media_type=None, parser_context=None):
        limit = settings.API_MAX_BODY_BYTES
        request = (parser_context or {}).get("request")
        declared = request.META.get("CONTENT_LENGTH", "") if request is not None else ""
        if declared and declared.isdigit() and int(declared) > limit:
            raise _too_large(int(declared), limit)

        body = stream.read(limit + 1) if stream is not None else b""
        if len(body) > limit:
            raise _too_large(len(body), limit)

        try:
            return super().parse(io.BytesIO(body), media_type, parser_context)
        except RecursionError:
            raise ParseError(_("JSON parse error: nesting is too deep.")) from None


def _too_large(size: int, limit: int) -> PayloadTooLargeError:
    return PayloadTooLargeError(_("The request body is %(size)d bytes; the limit is %(limit)d bytes.")
                                % {"size": size, "limit": limit})
