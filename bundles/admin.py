from datetime import timedelta
from zoneinfo import ZoneInfo

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import F, Q
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from audit.models import AuditLog
from devices.models import DeviceActivity
from molam_offline.actions import ActionRefused
from molam_offline.admin_filters import RecentValuesFieldListFilter
from molam_offline.admin_tools import CountryListFilter, CountryScopedAdmin, NoteForm, confirm_action
from molam_offline.api import client_ip
from molam_offline.pagination import EstimatedCountPaginator
from policies.models import ChangeRequest, ChangeStatus, Policy

from . import actions
from .models import REVIEW_STATUSES, Bundle, BundleStatus, SequenceAnomaly, Transaction
from .reasons import ReasonCode

# How many of the device's other bundles, and of the audit rows, the review page lists.
REVIEW_PAGE_ROWS = 50
REVIEW_ACTIVITY_DAYS = 7


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


class ApproveForm(NoteForm):
    pass


class RejectForm(forms.Form):
    reason_code = forms.ChoiceField(label=gettext_lazy("Reason code"), choices=[
        (code.value, code.label) for code in actions.MANUAL_REJECTION_CODES])
    note = forms.CharField(label=gettext_lazy("Note"), required=False, widget=forms.Textarea(attrs={"rows": 3}),
                           help_text=gettext_lazy("Required with the reason code 'other'."))

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("reason_code") == ReasonCode.OTHER and not (cleaned.get("note") or "").strip():
            self.add_error("note", _("A note is required with the reason code 'other'."))
        return cleaned


def approve(bundle: Bundle, *, acting_user, note: str, ip_address: str | None) -> str | None:
    """Approve a bundle in review, or accept one rejected as too old; return a message if it waits for four eyes."""
    if actions.is_system_rejection(bundle, ReasonCode.BUNDLE_TOO_OLD):
        actions.accept_too_old_bundle(acting_user=acting_user, bundle_pk=bundle.pk, note=note, ip_address=ip_address)
        return None

    outcome = actions.approve_bundle(acting_user=acting_user, bundle_pk=bundle.pk, note=note, ip_address=ip_address)
    if outcome.approved:
        return None
    return _("total %(amount)s is above the four-eyes amount; change request #%(pk)s waits for a second "
             "reviewer.") % {"amount": bundle.total_amount, "pk": outcome.change_request.pk}


def format_sira_reason(reason) -> str:
    """Render one fraud score reason, a dict such as {code, label, weight} or a plain string."""
    if not isinstance(reason, dict):
        return str(reason)
    label = reason.get("label") or reason.get("code") or ""
    extras = [f"{key}={value}" for key, value in reason.items() if key not in ("label",)]
    return f"{label} ({', '.join(extras)})" if extras else str(label)


@admin.register(Bundle)
class BundleAdmin(CountryScopedAdmin):
    list_display = ["bundle_id", "device_id", "country", "sequence", "status", "reason_code", "tx_count",
                    "total_amount", "currency", "max_sira_score", "push_attempts", "reconciliation_status",
                    "created_at", "review_link"]
    list_filter = ["status", CountryListFilter, ("reason_code", RecentValuesFieldListFilter), "reconciliation_status"]
    search_fields = ["=bundle_id", "=device__device_id"]
    date_hierarchy = "created_at"
    inlines = [TransactionInline]
    show_full_result_count = False
    paginator = EstimatedCountPaginator
    exclude = ["payload"]
    readonly_fields = [f.name for f in Bundle._meta.fields if f.name != "payload"]
    actions = ["approve_selected", "reject_selected", "requeue_selected"]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def has_review_permission(self, request):
        return request.user.has_perm(actions.REVIEW_PERMISSION)

    def has_requeue_permission(self, request):
        return request.user.has_perm(actions.REQUEUE_PERMISSION)

    @admin.display(description=gettext_lazy("review"))
    def review_link(self, bundle):
        url = reverse("admin:bundles_bundle_review", args=[bundle.pk])
        label = _("Review") if bundle.status in REVIEW_STATUSES else _("Details")
        return format_html('<a href="{}">{}</a>', url, label)

    @admin.action(description=gettext_lazy("Approve selected bundles (or accept too-old ones)"),
                  permissions=["review"])
    def approve_selected(self, request, queryset):
        return confirm_action(
            self, request, queryset, form_class=ApproveForm, title=_("Approve bundles"),
            apply=lambda bundle, data: approve(bundle, acting_user=request.user, note=data["note"],
                                               ip_address=client_ip(request)))

    @admin.action(description=gettext_lazy("Reject selected bundles"), permissions=["review"])
    def reject_selected(self, request, queryset):
        return confirm_action(
            self, request, queryset, form_class=RejectForm, title=_("Reject bundles"),
            apply=lambda bundle, data: actions.reject_bundle(
                acting_user=request.user, bundle_pk=bundle.pk, reason_code=data["reason_code"], note=data["note"],
                ip_address=client_ip(request)) and None)

    @admin.action(description=gettext_lazy("Requeue selected bundles for validation"), permissions=["requeue"])
    def requeue_selected(self, request, queryset):
        return confirm_action(
            self, request, queryset, form_class=NoteForm, title=_("Requeue bundles for validation"),
            apply=lambda bundle, data: actions.requeue_bundle(
                acting_user=request.user, bundle_pk=bundle.pk, note=data["note"],
                ip_address=client_ip(request)) and None)

    def get_urls(self):
        review = self.admin_site.admin_view(self.review_view)
        return [path("<path:object_id>/review/", review, name="bundles_bundle_review"), *super().get_urls()]

    def review_view(self, request, object_id):
        """Show what a reviewer needs to decide a bundle, with the approve and reject forms."""
        bundle = self.get_object(request, object_id)
        if not self.has_view_permission(request, bundle):
            raise PermissionDenied

        approve_form, reject_form = ApproveForm(prefix="approve"), RejectForm(prefix="reject")
        if request.method == "POST":
            if not self.has_review_permission(request):
                raise PermissionDenied
            approve_form, reject_form, done = self._handle_review_post(request, bundle)
            if done:
                return HttpResponseRedirect(request.path)

        context = {
            **self.admin_site.each_context(request),
            **self._review_context(bundle),
            "title": _("Review bundle %(bundle)s") % {"bundle": bundle.bundle_id},
            "opts": self.opts,
            "original": bundle,
            "approve_form": approve_form,
            "reject_form": reject_form,
            "can_review": self.has_review_permission(request),
            "can_approve": bundle.status in REVIEW_STATUSES
                           or actions.is_system_rejection(bundle, ReasonCode.BUNDLE_TOO_OLD),
            "can_reject": bundle.status in REVIEW_STATUSES or actions.is_system_rejection(bundle),
        }
        return TemplateResponse(request, "admin/bundles/bundle/review.html", context)

    def _handle_review_post(self, request, bundle):
        """Run the submitted approve or reject form; return both forms and whether an action ran."""
        ip_address = client_ip(request)
        approve_form, reject_form = ApproveForm(prefix="approve"), RejectForm(prefix="reject")
        try:
            if "approve" in request.POST:
                approve_form = ApproveForm(request.POST, prefix="approve")
                if not approve_form.is_valid():
                    return approve_form, reject_form, False
                pending = approve(bundle, acting_user=request.user, note=approve_form.cleaned_data["note"],
                                  ip_address=ip_address)
                if pending:
                    self.message_user(request, f"{bundle.bundle_id}: {pending}", messages.WARNING)
                else:
                    self.message_user(request, _("Bundle %(bundle)s approved and queued for reconciliation.") % {
                        "bundle": bundle.bundle_id}, messages.SUCCESS)
                return approve_form, reject_form, True

            reject_form = RejectForm(request.POST, prefix="reject")
            if not reject_form.is_valid():
                return approve_form, reject_form, False
            actions.reject_bundle(acting_user=request.user, bundle_pk=bundle.pk,
                                  reason_code=reject_form.cleaned_data["reason_code"],
                                  note=reject_form.cleaned_data["note"], ip_address=ip_address)
            self.message_user(request, _("Bundle %(bundle)s rejected.") % {"bundle": bundle.bundle_id},
                              messages.SUCCESS)
        except ActionRefused as refusal:
            self.message_user(request, refusal.message, messages.WARNING)
        return approve_form, reject_form, True

    def _review_context(self, bundle: Bundle) -> dict:
        transactions = list(bundle.transactions.order_by(F("sira_score").desc(nulls_last=True), "position"))
        for tx in transactions:
            tx.reason_lines = [format_sira_reason(reason) for reason in (tx.sira_reasons or [])]

        policy = Policy.objects.filter(country=bundle.country).first()
        today = timezone.localdate(timezone=ZoneInfo(policy.timezone)) if policy else timezone.localdate()
        activity = DeviceActivity.objects.filter(
            device_id=bundle.device_id, activity_date__gte=today - timedelta(days=REVIEW_ACTIVITY_DAYS)
        ).order_by("-activity_date")
        other_bundles = Bundle.objects.filter(device_id=bundle.device_id).exclude(pk=bundle.pk).only(
            "bundle_id", "sequence", "status", "reason_code", "tx_count", "total_amount", "currency",
            "max_sira_score", "created_at").order_by("-created_at")[:REVIEW_PAGE_ROWS]
        audit_rows = AuditLog.objects.filter(
            Q(bundle_id=bundle.bundle_id) | Q(device_id=bundle.device_id, bundle_id__isnull=True)
        ).order_by("-created_at", "-id")[:REVIEW_PAGE_ROWS]
        change_requests = ChangeRequest.objects.filter(bundle=bundle, status=ChangeStatus.PENDING).select_related(
            "requested_by")

        return {"bundle": bundle, "device": bundle.device if bundle.device_id else None,
                "transactions": transactions, "activity": activity, "other_bundles": other_bundles,
                "policy": policy, "audit_rows": audit_rows, "change_requests": change_requests,
                "activity_days": REVIEW_ACTIVITY_DAYS, "status_accepted": BundleStatus.ACCEPTED}


@admin.register(Transaction)
class TransactionAdmin(CountryScopedAdmin):
    country_field = "bundle__country"
    list_display = ["local_id", "bundle", "device_id", "type", "amount", "currency", "sender", "receiver",
                    "status", "failed_check", "sira_score", "initiated_at"]
    list_filter = ["status", CountryListFilter, ("type", RecentValuesFieldListFilter),
                   ("currency", RecentValuesFieldListFilter), ("failed_check", RecentValuesFieldListFilter)]
    # Exact, case-sensitive lookups, so PostgreSQL can use the indexes at millions of rows.
    search_fields = ["bundle_id__exact", "device_id__exact", "local_id__exact", "sender__exact", "receiver__exact"]
    list_select_related = ["bundle"]
    readonly_fields = [f.name for f in Transaction._meta.fields]
    show_full_result_count = False
    paginator = EstimatedCountPaginator

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(SequenceAnomaly)
class SequenceAnomalyAdmin(CountryScopedAdmin):
    country_field = "device__country"
    list_display = ["device", "kind", "sequence", "bundle_ids", "detected_at", "resolved_at"]
    list_filter = ["kind", CountryListFilter]
    search_fields = ["=device__device_id"]
    list_select_related = ["device"]
    readonly_fields = ["device", "kind", "sequence", "bundle_ids", "detected_at"]
    show_full_result_count = False

    def has_add_permission(self, request):
        return False
