import csv
import json

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import StreamingHttpResponse
from django.urls import path
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from molam_offline.admin_filters import RecentValuesFieldListFilter
from molam_offline.admin_tools import CountryListFilter, ReadOnlyAdmin
from molam_offline.pagination import EstimatedCountPaginator

from .models import AuditAction, AuditLog

EXPORT_PERMISSION = "audit.export_auditlog"
EXPORT_COLUMNS = ["created_at", "actor", "action", "bundle_id", "device_id", "country", "reason", "old_values",
                  "new_values", "details", "ip_address"]

# Cells starting with one of these would run as formulas in a spreadsheet; a leading
# quote keeps operator-typed text inert.
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


class RejectionFilter(admin.SimpleListFilter):
    """Bundle rejections by validation and by operators, for the weekly review."""

    title = _("rejections")
    parameter_name = "rejections"

    def lookups(self, request, model_admin):
        return [("all", _("All bundle rejections")), ("manual", _("Rejections by operators"))]

    def queryset(self, request, queryset):
        if self.value() == "all":
            return queryset.filter(action__in=[AuditAction.BUNDLE_REJECTED, AuditAction.MANUAL_REJECTION])
        if self.value() == "manual":
            return queryset.filter(action=AuditAction.MANUAL_REJECTION)
        return queryset


class Echo:
    """A file-like object whose write returns the line, for streaming csv.writer output."""

    def write(self, value):
        return value


def csv_cell(value) -> str:
    if isinstance(value, (dict, list)):
        value = json.dumps(value, ensure_ascii=False, sort_keys=True)
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_PREFIXES) else text


@admin.register(AuditLog)
class AuditLogAdmin(ReadOnlyAdmin):
    """Read-only for everyone: PostgreSQL refuses UPDATE and DELETE on this table anyway."""

    list_display = ["created_at", "actor", "action", "bundle_id", "device_id", "country", "reason", "ip_address"]
    list_filter = [RejectionFilter, ("action", RecentValuesFieldListFilter), CountryListFilter, "created_at"]
    search_fields = ["=bundle_id", "=device_id", "actor"]
    date_hierarchy = "created_at"
    change_list_template = "admin/audit/auditlog/change_list.html"
    paginator = EstimatedCountPaginator

    def changelist_view(self, request, extra_context=None):
        extra_context = {**(extra_context or {}), "can_export": request.user.has_perm(EXPORT_PERMISSION)}
        return super().changelist_view(request, extra_context)

    def get_urls(self):
        export = self.admin_site.admin_view(self.export_view)
        return [path("export/", export, name="audit_auditlog_export"), *super().get_urls()]

    def export_view(self, request):
        """Stream the rows of the current list (its filters and search, the user's countries) as CSV."""
        if not (self.has_view_permission(request) and request.user.has_perm(EXPORT_PERMISSION)):
            raise PermissionDenied

        changelist = self.get_changelist_instance(request)
        rows = changelist.queryset.order_by("created_at", "id").values_list(*EXPORT_COLUMNS).iterator(chunk_size=2000)
        writer = csv.writer(Echo())

        def lines():
            yield writer.writerow(EXPORT_COLUMNS)
            for row in rows:
                yield writer.writerow([csv_cell(value) for value in row])

        filename = f"audit-log-{timezone.now():%Y%m%d-%H%M}.csv"
        response = StreamingHttpResponse(lines(), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="{filename}"'
        return response
