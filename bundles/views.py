import logging

from django.conf import settings
from django.utils.translation import gettext as _
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from molam_offline.api import client_ip
from molam_offline.schema import BUNDLE_EXAMPLE, BUNDLE_PUSH_RESPONSES, BundleDocumentSerializer
from molam_offline.throttling import BundlePushAddressThrottle, check_device_rate, count_device_push

from .reasons import ReasonCode
from .services import BundleConflict, RepeatSignatureInvalid, ingest_bundle
from .wire import BundleFormatError, PayloadTooLarge, parse_bundle

logger = logging.getLogger(__name__)

# Reasons of bundles whose signature did not verify against a registered key.
UNVERIFIED_REASONS = {ReasonCode.INVALID_SIGNATURE, ReasonCode.UNKNOWN_DEVICE}


def bundle_answer(bundle) -> dict:
    return {
        "bundle_id": bundle.bundle_id,
        "device_id": bundle.device_id,
        "status": bundle.status,
        "reason_code": bundle.reason_code or None,
        "rejected_reason": bundle.rejected_reason,
        "push_attempts": bundle.push_attempts,
        "tx_count": bundle.tx_count,
    }


class BundlePushView(APIView):
    """POST /offline/bundles: a device pushes one signed bundle.

    Devices authenticate by their bundle signature, so the view takes no token or
    session. The body is read here, with its size checked before parsing, instead of
    through DRF's parsers.
    """

    authentication_classes: list = []
    permission_classes = [AllowAny]
    # Per address here, before the body is read; per device in post(), once it is parsed.
    throttle_classes = [BundlePushAddressThrottle]

    @extend_schema(operation_id="push_bundle", request=BundleDocumentSerializer, responses=BUNDLE_PUSH_RESPONSES,
                   examples=[BUNDLE_EXAMPLE], auth=[], summary="Push one signed bundle")
    def post(self, request):
        limit = settings.OFFLINE["MAX_BUNDLE_BYTES"]
        content_type = request.content_type.split(";")[0].strip().lower()
        if content_type != "application/json":
            return _error_response(status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, "$", "unsupported_media_type",
                                   _("Send the bundle as application/json."))

        declared = request.META.get("CONTENT_LENGTH") or "0"
        if not declared.isdigit():
            return _error_response(status.HTTP_400_BAD_REQUEST, "$", "invalid_length",
                                   _("Invalid Content-Length header."))
        if int(declared) > limit:
            return _too_large(int(declared), limit)

        # Reading the WSGI stream directly skips Django's DATA_UPLOAD_MAX_MEMORY_SIZE check,
        # which would return 400 instead of 413; the limit is enforced here instead.
        body = request._request.read(limit + 1)
        if not body:
            # Django reads no body without a Content-Length header, as with chunked uploads.
            return _error_response(status.HTTP_400_BAD_REQUEST, "$", "empty_body",
                                   _("The body is empty. Send the bundle as JSON with a Content-Length header."))

        try:
            parsed = parse_bundle(body)
        except PayloadTooLarge as error:
            return _too_large(error.size, error.limit)
        except BundleFormatError as error:
            logger.info("Malformed bundle from %s: %d errors, first %s", client_ip(request), len(error.errors),
                        error.errors[0]["path"])
            return Response({"detail": _("The bundle is malformed: %(count)d error(s).")
                             % {"count": len(error.errors)}, "errors": error.errors},
                            status=status.HTTP_400_BAD_REQUEST)

        check_device_rate(parsed.device_id)

        try:
            result = ingest_bundle(parsed, source_ip=client_ip(request))
        except BundleConflict as error:
            answer = {"detail": _("Bundle %(bundle_id)s is already stored with other content. A new bundle "
                                  "needs a new bundle_id.") % {"bundle_id": parsed.bundle_id},
                      "errors": [{"path": "$.bundle_id", "code": "conflict",
                                  "message": _("This bundle_id is already used by a different bundle.")}]}
            # Anyone can claim a bundle_id, so the stored bundle is shown only to its own device.
            if error.same_device_signed:
                answer["bundle"] = bundle_answer(error.bundle)
            return Response(answer, status=status.HTTP_409_CONFLICT)
        except RepeatSignatureInvalid:
            return _error_response(status.HTTP_403_FORBIDDEN, "$.signature", "invalid_signature",
                                   _("The signature of this repeat push does not verify; the push was not counted."))

        if result.created and settings.CELERY_TASK_ALWAYS_EAGER:
            # Without a broker the validation task ran in this process on commit, so the
            # stored status may already be final. A repeat push was read under its lock.
            result.bundle.refresh_from_db()
        if result.bundle.reason_code not in UNVERIFIED_REASONS:
            count_device_push(parsed.device_id)
        code = status.HTTP_202_ACCEPTED if result.created else status.HTTP_200_OK
        return Response(bundle_answer(result.bundle), status=code)


def _error_response(code: int, path: str, error_code: str, message: str) -> Response:
    return Response({"detail": message, "errors": [{"path": path, "code": error_code, "message": message}]},
                    status=code)


def _too_large(size: int, limit: int) -> Response:
    return _error_response(status.HTTP_413_REQUEST_ENTITY_TOO_LARGE, "$", "too_large",
                           _("The bundle is %(size)d bytes; the limit is %(limit)d bytes. Split it into smaller "
                             "bundles.") % {"size": size, "limit": limit})
