from django import forms
from django.contrib import admin, messages
from django.http import HttpResponseRedirect
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from guardian.admin import ReinforcedGuardedModelAdminMixin

from audit.models import AuditAction
from audit.services import record
from molam_offline.actions import ActionRefused
from molam_offline.admin_tools import CountryListFilter, CountryScopedAdmin, NoteForm, ReadOnlyAdmin, confirm_action
from molam_offline.api import client_ip

from . import actions
from .models import ChangeRequest, Policy


class PolicyForm(forms.ModelForm):
    change_note = forms.CharField(label=gettext_lazy("Reason for the change"), widget=forms.Textarea(attrs={"rows": 2}),
                                  help_text=gettext_lazy("Stored in the audit log. Raising a limit waits for a "
                                                         "second approver."))

    class Meta:
        model = Policy
        exclude = ["updated_by"]


@admin.register(Policy)
class PolicyAdmin(ReinforcedGuardedModelAdminMixin, CountryScopedAdmin):
    """Country policies; superusers grant countries to users and groups from a policy's "Object permissions"."""

    form = PolicyForm
    list_display = ["country", "currency", "timezone", "max_offline_per_device_per_day",
                    "max_amount_per_device_per_day", "max_amount_per_transaction", "max_bundle_age_hours",
                    "max_clock_skew_minutes", "sira_review_threshold", "sira_quarantine_threshold",
                    "four_eyes_amount_threshold", "is_active"]
    list_filter = ["is_active", "currency"]
    search_fields = ["country"]
    readonly_fields = ["updated_by", "created_at", "updated_at"]
    show_full_result_count = False

    def get_readonly_fields(self, request, obj=None):
        # The country names the guardian permission rows; it never changes once created.
        return [*self.readonly_fields, "country"] if obj is not None else self.readonly_fields

    def save_model(self, request, obj, form, change):
        """Save a new policy with its audit row, or send an edit through change_policy (four eyes)."""
        note = form.cleaned_data["change_note"]
        if not change:
            obj.updated_by = request.user
            super().save_model(request, obj, form, change)
            record(AuditAction.POLICY_CHANGED, acting_user=request.user, country=obj.country, reason=note,
                   ip_address=client_ip(request),
                   new_values={name: actions.json_value(form.cleaned_data[name]) for name in form.changed_data
                               if name != "change_note"})
            return

        changes = {name: form.cleaned_data[name] for name in form.changed_data if name != "change_note"}
        try:
            outcome = actions.change_policy(acting_user=request.user, policy_pk=obj.pk, changes=changes, note=note,
                                            ip_address=client_ip(request))
        except ActionRefused as refusal:
            request._policy_not_saved = refusal.message
            return
        if not outcome.applied:
            request._policy_not_saved = _("This change raises a limit, so it waits for a second approver: change "
                                          "request #%(pk)s.") % {"pk": outcome.change_request.pk}

    def response_change(self, request, obj):
        not_saved = getattr(request, "_policy_not_saved", None)
        if not_saved:
            self.message_user(request, not_saved, messages.WARNING)
            return HttpResponseRedirect(reverse("admin:policies_policy_changelist"))
        return super().response_change(request, obj)

    def log_change(self, request, obj, message):
        # The audit log records policy changes; skip the admin's own entry when nothing was saved.
        if getattr(request, "_policy_not_saved", None):
            return None
        return super().log_change(request, obj, message)


@admin.register(ChangeRequest)
class ChangeRequestAdmin(ReadOnlyAdmin):
    list_display = ["id", "kind", "status", "country", "bundle", "new_values", "requested_by", "requested_at",
                    "decided_by", "decided_at"]
    list_filter = ["status", "kind", CountryListFilter]
    search_fields = ["=bundle__bundle_id", "requested_by__username"]
    list_select_related = ["bundle", "requested_by", "decided_by"]
    actions = ["approve_selected", "reject_selected"]

    def has_decide_permission(self, request):
        return any(request.user.has_perm(permission) for permission in actions.APPROVER_PERMISSIONS.values())

    @admin.action(description=gettext_lazy("Approve selected changes (second approver)"), permissions=["decide"])
    def approve_selected(self, request, queryset):
        return confirm_action(
            self, request, queryset, form_class=NoteForm, title=_("Approve changes"),
            object_label=lambda change: f"#{change.pk}",
            apply=lambda change, data: actions.approve_change_request(
                acting_user=request.user, change_request_pk=change.pk, note=data["note"],
                ip_address=client_ip(request)) and None)

    @admin.action(description=gettext_lazy("Reject selected changes"), permissions=["decide"])
    def reject_selected(self, request, queryset):
        return confirm_action(
            self, request, queryset, form_class=NoteForm, title=_("Reject changes"),
            object_label=lambda change: f"#{change.pk}",
            apply=lambda change, data: actions.reject_change_request(
                acting_user=request.user, change_request_pk=change.pk, note=data["note"],
                ip_address=client_ip(request)) and None)
