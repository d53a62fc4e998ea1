"""Request body parsers for the DRF endpoints.

Kept apart from molam_offline.api, which imports rest_framework.views: DRF imports the
parser classes named in its settings while rest_framework.views loads.
"""

from django.conf import settings
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from rest_framework import status
from rest_framework.exceptions import APIException, ParseError
from rest_framework.parsers import BaseParser


class PayloadTooLarge(APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = gettext_lazy("The request body is too large.")
    default_code = "too_large"


class StrictJSONParser(BaseParser):
    """Parse JSON with the bundle parser's rules: a size limit, no duplicate keys, bounded nesting.

    DRF's JSONParser keeps the last of duplicate keys and lets deep nesting raise
    RecursionError, which would be a 500. DRF also reads the whole request.body for its
    JSONParser subclasses, which Django rejects with an HTML 400 when it is too large.
    This parser checks the declared Content-Length first, then reads at most one byte past
    settings.API_MAX_BODY_BYTES from the stream, and raises a 413 above that limit.
    """

    media_type = "application/json"

    def parse(self, stream, media_type=None, parser_context=None):
        from bundles.wire import BundleFormatError, decode_json

        limit = settings.API_MAX_BODY_BYTES
        request = (parser_context or {}).get("request")
        declared = request.META.get("CONTENT_LENGTH", "") if request is not None else ""
        if declared.isdigit() and int(declared) > limit:
            raise _too_large(int(declared), limit)

        body = stream.read(limit + 1) if stream is not None else b""
        if len(body) > limit:
            raise _too_large(len(body), limit)

        try:
            return decode_json(body)
        except BundleFormatError as error:
            raise ParseError(error.errors[0]["message"], code=error.errors[0]["code"]) from None


def _too_large(size: int, limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(_("The request body is %(size)d bytes; the limit is %(limit)d bytes.")
                           % {"size": size, "limit": limit})
