import re

from django.utils.translation import gettext as _
from rest_framework import serializers

from bundles.wire import IDENTIFIER

from .keys import InvalidPublicKey, load_public_key
from .models import Device, TenantType

COUNTRY = re.compile(r"^[A-Z]{2}$")
# Control characters and unpaired surrogates, which PostgreSQL cannot store as UTF-8.
FORBIDDEN_CHARACTERS = re.compile(r"[\x00-\x1f\x7f\u2028\u2029\ud800-\udfff]")
# A PEM block needs its line breaks.
FORBIDDEN_IN_PEM = re.compile(r"[\x00-\x09\x0b\x0c\x0e-\x1f\x7f\u2028\u2029\ud800-\udfff]")


class StrictCharField(serializers.CharField):
    """A CharField that takes only JSON strings (DRF's turns 42 into "42") without control characters."""

    def __init__(self, *, forbidden=FORBIDDEN_CHARACTERS, **kwargs):
        super().__init__(**kwargs)
        self.forbidden = forbidden

    def to_internal_value(self, data):
        if not isinstance(data, str):
            raise serializers.ValidationError(_("Expected a string."), code="invalid_type")
        if self.forbidden.search(data):
            raise serializers.ValidationError(_("Control characters, including NUL, are not allowed."),
                                              code="invalid_character")
        return super().to_internal_value(data)


class DeviceRegistrationSerializer(serializers.Serializer):
    device_id = StrictCharField(max_length=64)
    tenant_type = serializers.ChoiceField(choices=TenantType.choices)
    tenant_id = StrictCharField(max_length=64)
    pubkey_pem = StrictCharField(max_length=4096, trim_whitespace=False, forbidden=FORBIDDEN_IN_PEM)
    country = StrictCharField(max_length=2, min_length=2)

    def validate_device_id(self, value):
        if not IDENTIFIER.fullmatch(value):
            raise serializers.ValidationError(
                _("Use 1 to 64 letters, digits and . _ : - characters, starting with a letter or digit."))
        return value

    def validate_country(self, value):
        if not COUNTRY.match(value):
            raise serializers.ValidationError(_("Expected an ISO 3166-1 alpha-2 code in capitals, such as SN."))
        return value

    def validate_pubkey_pem(self, value):
        try:
            load_public_key(value)
        except InvalidPublicKey as error:
            raise serializers.ValidationError(_("Invalid public key: %(problem)s.") % {"problem": error}) from None
        return value


class DeviceSerializer(serializers.ModelSerializer):
    class Meta:
        model = Device
        fields = ["device_id", "tenant_type", "tenant_id", "country", "key_alg", "key_fingerprint", "status",
                  "created_at", "last_seen_at"]
        read_only_fields = fields
