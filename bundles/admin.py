from django.contrib import admin
from django.utils.translation import gettext_lazy as _

from molam_offline.admin_filters import RecentValuesFieldListFilter
from molam_offline.pagination import EstimatedCountPaginator

from .models import Bundle, SequenceAnomaly, Transaction


class TransactionInline(admin.TabularInline):
    model = Transaction
    fields = ["position", "local_id", "type", "amount", "currency", "sender", "receiver", "initiated_at", "status",
              "failed_check", "failure_reason", "sira_score", "sira_reasons", "note"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    ordering = ["position"]

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Bundle)
class BundleAdmin(admin.ModelAdmin):
    list_display = ["bundle_id", "device_id", "country", "sequence", "status", "reason_code", "tx_count",
                    "total_amount", "currency", "max_sira_score", "push_attempts", "reconciliation_status",
                    "created_at"]
    list_filter = ["status", ("country", RecentValuesFieldListFilter), ("reason_code", RecentValuesFieldListFilter),
                   "reconciliation_status"]
    search_fields = ["=bundle_id", "=device__device_id"]
    date_hierarchy = "created_at"
    inlines = [TransactionInline]
    show_full_result_count = False
    paginator = EstimatedCountPaginator
    exclude = ["payload"]
    readonly_fields = [f.name for f in Bundle._meta.fields if f.name != "payload"]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Transaction)
class TransactionAdmin(admin.ModelAdmin):
    list_display = ["local_id", "bundle", "device_id", "type", "amount", "currency", "sender", "receiver",
                    "status", "failed_check", "sira_score", "initiated_at"]
    list_filter = ["status", ("type", RecentValuesFieldListFilter), ("currency", RecentValuesFieldListFilter),
                   ("failed_check", RecentValuesFieldListFilter)]
    # Exact, case-sensitive lookups, so that each term uses the column's index.
    search_fields = ["bundle_id__exact", "device_id__exact", "local_id__exact", "sender__exact", "receiver__exact"]
    readonly_fields = [f.name for f in Transaction._meta.fields]
    show_full_result_count = False
    paginator = EstimatedCountPaginator

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(SequenceAnomaly)
class SequenceAnomalyAdmin(admin.ModelAdmin):
    list_display = ["device", "kind", "sequence", "bundle_ids", "detected_at", "resolved_at"]
    list_filter = ["kind", "device__country"]
    search_fields = ["=device__device_id"]
    list_select_related = ["device"]
    readonly_fields = ["device", "kind", "sequence", "bundle_ids", "detected_at"]
    show_full_result_count = False
    verbose_name_plural = _("sequence anomalies")

    def has_add_permission(self, request):
        return False
