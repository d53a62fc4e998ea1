from django.contrib import admin

from molam_offline.admin_tools import CountryListFilter, CountryScopedAdmin

from .models import SyncQueueItem


@admin.register(SyncQueueItem)
class SyncQueueItemAdmin(CountryScopedAdmin):
    country_field = "bundle__country"
    list_display = ["bundle", "priority", "status", "attempts", "locked_by", "lease_expires_at", "last_error",
                    "created_at", "processed_at"]
    list_filter = ["status", "priority", CountryListFilter]
    search_fields = ["=bundle__bundle_id", "=bundle__device__device_id"]
    list_select_related = ["bundle"]
    readonly_fields = [f.name for f in SyncQueueItem._meta.fields]
    show_full_result_count = False

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
