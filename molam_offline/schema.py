"""OpenAPI descriptions (drf-spectacular) of the API's request and response bodies.

These serializers only document the wire format: bundles/wire.py parses pushes and
devices/serializers.py validates registrations.
"""

from drf_spectacular.utils import OpenApiExample, OpenApiResponse
from rest_framework import serializers


class ErrorItemSerializer(serializers.Serializer):
    path = serializers.CharField(help_text="JSON path of the invalid value, such as $.transactions[0].amount.")
    code = serializers.CharField(help_text="Machine-readable error code, such as required or invalid_type.")
    message = serializers.CharField()


class ErrorSerializer(serializers.Serializer):
    detail = serializers.CharField()
    errors = ErrorItemSerializer(many=True, required=False)


class TransactionDocumentSerializer(serializers.Serializer):
    local_id = serializers.RegexField(r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,63}$")
    type = serializers.RegexField(r"^[a-z][a-z0-9_]{0,31}$")
    amount = serializers.RegexField(r"^[0-9]{1,16}(\.[0-9]{1,4})?$",
                                    help_text="Decimal string greater than zero, with at most the currency's decimals.")
    currency = serializers.RegexField(r"^[A-Z]{3}$", help_text="ISO 4217 code, such as XOF.")
    sender = serializers.RegexField(r"^[A-Za-z0-9+_.:@\-]{1,64}$")
    receiver = serializers.RegexField(r"^[A-Za-z0-9+_.:@\-]{1,64}$")
    initiated_at = serializers.DateTimeField(help_text="RFC 3339 timestamp with an offset.")
    note = serializers.CharField(max_length=140, required=False)


class SignatureDocumentSerializer(serializers.Serializer):
    alg = serializers.ChoiceField(choices=["Ed25519", "ES256"])
    value = serializers.CharField(help_text="Base64 signature of the RFC 8785 form of the bundle without "
                                            "`signature`. ES256 accepts DER or raw r||s.")


class BundleDocumentSerializer(serializers.Serializer):
    bundle_id = serializers.RegexField(r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,63}$")
    device_id = serializers.RegexField(r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,63}$")
    sequence = serializers.IntegerField(min_value=1, max_value=2**53 - 1)
    created_at = serializers.DateTimeField(help_text="Device clock when the bundle was sealed.")
    sent_at = serializers.DateTimeField(help_text="Device clock when this push was sent.")
    transactions = TransactionDocumentSerializer(many=True, min_length=1, max_length=500)
    signature = SignatureDocumentSerializer()


class BundleAnswerSerializer(serializers.Serializer):
    bundle_id = serializers.CharField()
    device_id = serializers.CharField()
    status = serializers.ChoiceField(choices=["received", "accepted", "rejected", "quarantined", "pending_review"])
    reason_code = serializers.CharField(allow_null=True)
    rejected_reason = serializers.CharField(allow_null=True)
    push_attempts = serializers.IntegerField()
    tx_count = serializers.IntegerField()


class ConflictSerializer(ErrorSerializer):
    bundle = BundleAnswerSerializer(required=False, help_text="Present only when the push is signed by the "
                                                              "device that owns the stored bundle.")


BUNDLE_EXAMPLE = OpenApiExample(
    "Bundle of one payment",
    request_only=True,
    value={
        "bundle_id": "bundle_7f3a9c", "device_id": "DEVICE_042", "sequence": 187,
        "created_at": "2026-12-04T09:58:00Z", "sent_at": "2026-12-04T10:00:03Z",
        "transactions": [{"local_id": "tx-000187", "type": "p2p", "amount": "1500", "currency": "XOF",
                          "sender": "+221770000001", "receiver": "+221770000002",
                          "initiated_at": "2026-12-04T09:12:40Z", "note": "Riz 25 kg"}],
        "signature": {"alg": "Ed25519", "value": "c2lnbmF0dXJlLW9mLXRoZS1jYW5vbmljYWwtYnl0ZXMtaGVyZS0tLS0tLS0tLS0="},
    },
)

ANSWER_EXAMPLE = OpenApiExample(
    "Stored, awaiting validation",
    response_only=True,
    value={"bundle_id": "bundle_7f3a9c", "device_id": "DEVICE_042", "status": "received", "reason_code": None,
           "rejected_reason": None, "push_attempts": 1, "tx_count": 1},
)

ERROR_RESPONSES = {
    413: OpenApiResponse(ErrorSerializer, description="The body is larger than the limit."),
    429: OpenApiResponse(ErrorSerializer, description="Too many requests; Retry-After gives the seconds to wait."),
    503: OpenApiResponse(ErrorSerializer, description="The database is unavailable; retry after Retry-After seconds."),
}

BUNDLE_PUSH_RESPONSES = {
    202: OpenApiResponse(BundleAnswerSerializer, description="New bundle stored (possibly as rejected).",
                         examples=[ANSWER_EXAMPLE]),
    200: OpenApiResponse(BundleAnswerSerializer, description="Repeat push of a stored bundle; its current status."),
    400: OpenApiResponse(ErrorSerializer, description="Malformed bundle; every error with its JSON path. Nothing "
                                                      "is stored."),
    403: OpenApiResponse(ErrorSerializer, description="Repeat push whose signature does not verify."),
    409: OpenApiResponse(ConflictSerializer, description="The bundle_id is stored with other content."),
    415: OpenApiResponse(ErrorSerializer, description="The body is not application/json."),
    **ERROR_RESPONSES,
}

REGISTRATION_EXAMPLE = OpenApiExample(
    "Merchant terminal with an Ed25519 key",
    request_only=True,
    value={"device_id": "DEVICE_XXX", "tenant_type": "merchant", "tenant_id": "merchant_123",
           "pubkey_pem": "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA...\n-----END PUBLIC KEY-----\n",
           "country": "SN"},
)
