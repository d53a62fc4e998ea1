from django.contrib import admin
from django.utils.translation import gettext_lazy as _

from bundles.models import SequenceAnomaly

from .models import Device, DeviceActivity


class SequenceAnomalyInline(admin.TabularInline):
    model = SequenceAnomaly
    fields = ["kind", "sequence", "bundle_ids", "detected_at", "resolved_at"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    verbose_name_plural = _("sequence gaps and conflicts")

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Device)
class DeviceAdmin(admin.ModelAdmin):
    list_display = ["device_id", "tenant_type", "tenant_id", "country", "key_alg", "status", "missing_sequence_count",
                    "key_conflict_detected_at", "last_seen_at", "created_at"]
    list_filter = ["status", "country", "tenant_type", "key_alg"]
    search_fields = ["device_id", "tenant_id"]
    readonly_fields = ["key_alg", "key_fingerprint", "key_registered_at", "max_sequence_seen",
                       "missing_sequence_count", "key_conflict_detected_at", "registered_by", "created_at",
                       "last_seen_at"]
    list_select_related = ["registered_by"]
    inlines = [SequenceAnomalyInline]
    show_full_result_count = False


@admin.register(DeviceActivity)
class DeviceActivityAdmin(admin.ModelAdmin):
    list_display = ["device", "activity_date", "tx_count", "total_amount", "updated_at"]
    list_filter = ["activity_date", "device__country"]
    search_fields = ["device__device_id"]
    list_select_related = ["device"]
    readonly_fields = ["device", "activity_date", "tx_count", "total_amount", "updated_at"]
    show_full_result_count = False

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
