from django.contrib import admin, messages
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from molam_offline.admin_tools import CountryListFilter, ReadOnlyAdmin
from policies.scoping import allowed_countries

from .models import DeadLetter, JournalEntry, LedgerAccount, SyncQueueItem, WorkerHeartbeat
from .services import QueueActionError, requeue_queue_item


@admin.action(description=_("Requeue selected dead or failed rows"), permissions=["requeue"])
def requeue_selected(modeladmin, request, queryset):
    requeued = 0
    for item_id in queryset.values_list("pk", flat=True):
        try:
            requeue_queue_item(acting_user=request.user, item_id=item_id, reason="admin action")
        except QueueActionError as error:
            modeladmin.message_user(request, str(error), messages.WARNING)
        else:
            requeued += 1
    if requeued:
        modeladmin.message_user(request, ngettext("%(count)d row requeued.", "%(count)d rows requeued.", requeued)
                                % {"count": requeued}, messages.SUCCESS)


class ReconciliationExceptionFilter(admin.SimpleListFilter):
    title = _("reconciliation exceptions")
    parameter_name = "exceptions"

    def lookups(self, request, model_admin):
        return [("yes", _("With failed transactions"))]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(outcome__failed__gt=0)
        return queryset


class QueueItemAdmin(ReadOnlyAdmin):
    country_field = "bundle__country"
    list_display = ["bundle", "priority", "status", "attempts", "locked_by", "lease_expires_at", "available_at",
                    "last_error", "created_at", "processed_at"]
    list_filter = ["status", ReconciliationExceptionFilter, "priority", CountryListFilter]
    search_fields = ["=bundle__bundle_id", "=bundle__device__device_id"]
    list_select_related = ["bundle"]
    actions = [requeue_selected]

    def has_requeue_permission(self, request):
        return request.user.has_perm("bundles.requeue_bundle")


admin.site.register(SyncQueueItem, QueueItemAdmin)


@admin.register(DeadLetter)
class DeadLetterAdmin(QueueItemAdmin):
    list_display = ["bundle", "attempts", "last_error", "created_at", "updated_at"]
    list_filter = ["priority", CountryListFilter]

    def has_view_permission(self, request, obj=None):
        return request.user.has_perm("reconciliation.view_syncqueueitem") or super().has_view_permission(request, obj)


@admin.register(LedgerAccount)
class LedgerAccountAdmin(ReadOnlyAdmin):
    # Wallet accounts belong to no single country: only users with access to every
    # country see them, so a reviewer scoped to one country learns nothing of others.
    country_field = None

    def get_queryset(self, request):
        queryset = admin.ModelAdmin.get_queryset(self, request)
        return queryset if allowed_countries(request.user) is None else queryset.none()

    list_display = ["identifier", "currency", "balance", "opening_balance", "updated_at"]
    list_filter = ["currency"]
    search_fields = ["=identifier"]


@admin.register(JournalEntry)
class JournalEntryAdmin(ReadOnlyAdmin):
    country_field = "transaction__bundle__country"
    list_display = ["posted_at", "device_id", "local_id", "bundle_id", "debit_account", "credit_account", "amount",
                    "currency"]
    list_filter = ["currency"]
    search_fields = ["=bundle_id", "=device_id", "=local_id", "=debit_account__identifier",
                     "=credit_account__identifier"]
    list_select_related = ["debit_account", "credit_account"]
    raw_id_fields = ["transaction", "debit_account", "credit_account"]


@admin.register(WorkerHeartbeat)
class WorkerHeartbeatAdmin(ReadOnlyAdmin):
    # Heartbeats describe processes, not any country's data.
    def get_queryset(self, request):
        return admin.ModelAdmin.get_queryset(self, request)

    list_display = ["worker_name", "hostname", "pid", "last_run_at", "last_success_at", "last_error"]
