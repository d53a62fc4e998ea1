from django.contrib import admin

from molam_offline.admin_filters import RecentValuesFieldListFilter
from molam_offline.pagination import EstimatedCountPaginator

from .models import AuditLog


@admin.register(AuditLog)
class AuditLogAdmin(admin.ModelAdmin):
    """Read-only for everyone: PostgreSQL refuses UPDATE and DELETE on this table anyway."""

    list_display = ["created_at", "actor", "action", "bundle_id", "device_id", "country", "reason", "ip_address"]
    list_filter = [("action", RecentValuesFieldListFilter), ("country", RecentValuesFieldListFilter)]
    search_fields = ["=bundle_id", "=device_id", "actor"]
    date_hierarchy = "created_at"
    show_full_result_count = False
    paginator = EstimatedCountPaginator

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in AuditLog._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
