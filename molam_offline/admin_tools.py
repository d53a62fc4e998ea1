"""Admin building blocks shared by the apps: country scoping, country filter, action confirmation pages."""

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.template.response import TemplateResponse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from policies.models import Policy
from policies.scoping import allowed_countries, filter_by_country

from .actions import ActionRefused, BulkResult


class CountryListFilter(admin.SimpleListFilter):
    """Filter by country, offering only the countries the user has access to."""

    title = gettext_lazy("country")
    parameter_name = "country"

    def __init__(self, request, params, model, model_admin):
        self.country_field = model_admin.country_field
        super().__init__(request, params, model, model_admin)

    def lookups(self, request, model_admin):
        countries = allowed_countries(request.user)
        if countries is None:
            countries = Policy.objects.values_list("country", flat=True)
        return [(code, code) for code in sorted(countries)]

    def queryset(self, request, queryset):
        if self.value():
            return queryset.filter(**{self.country_field: self.value()})
        return queryset


class CountryScopedAdmin(admin.ModelAdmin):
    """A ModelAdmin that shows only rows of the countries the user has access to.

    Every admin view, action, search, filter and export starts from get_queryset, so one
    filter covers them all. A detail URL of another country's row returns 404.
    """

    # Lookup path from the model to a two-letter country code.
    country_field = "country"

    def get_queryset(self, request):
        return filter_by_country(super().get_queryset(request), request.user, self.country_field)

    def get_object(self, request, object_id, from_field=None):
        obj = super().get_object(request, object_id, from_field)
        if obj is None:
            raise Http404(_("%(name)s with ID %(id)s not found.") % {"name": self.opts.verbose_name,
                                                                      "id": object_id})
        return obj


class ReadOnlyAdmin(CountryScopedAdmin):
    """A country-scoped admin that shows rows which only the product's own code writes."""

    show_full_result_count = False

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.model._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class NoteForm(forms.Form):
    note = forms.CharField(label=gettext_lazy("Note"), widget=forms.Textarea(attrs={"rows": 3}),
                           help_text=gettext_lazy("Why you take this action; stored in the audit log."))


class ReasonForm(forms.Form):
    reason = forms.CharField(label=gettext_lazy("Reason"), widget=forms.Textarea(attrs={"rows": 3}),
                             help_text=gettext_lazy("Stored on the device and in the audit log."))


def confirm_action(modeladmin, request, queryset, *, form_class, title: str, apply, object_label=str,
                   initial=None):
    """Show a confirmation page with `form_class` for an admin action, then call `apply` per object.

    `apply(obj, cleaned_data)` runs one action function. It raises ActionRefused to skip
    the object with a reason, or returns a message when the change waits for a second
    approver. Returns None after applying (back to the list) or the page.
    """
    form = form_class(request.POST if "confirm" in request.POST else None, initial=initial)
    if "confirm" in request.POST and form.is_valid():
        result = BulkResult()
        for obj in queryset:
            try:
                pending_message = apply(obj, form.cleaned_data)
            except ActionRefused as refusal:
                result.skipped[object_label(obj)] = refusal.message
                continue
            except PermissionDenied as denied:
                # For example an ops reviewer selecting a policy change, which needs change_policy.
                result.skipped[object_label(obj)] = str(denied) or _("Permission denied.")
                continue
            if pending_message:
                result.pending[object_label(obj)] = pending_message
            else:
                result.changed.append(object_label(obj))
        report_result(modeladmin, request, result)
        return None

    context = {
        **modeladmin.admin_site.each_context(request),
        "title": title,
        "opts": modeladmin.model._meta,
        "objects": list(queryset),
        "form": form,
        "action_name": request.POST.get("action"),
        "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        "selected": request.POST.getlist(helpers.ACTION_CHECKBOX_NAME),
        "select_across": request.POST.get("select_across", "0"),
    }
    return TemplateResponse(request, "admin/molam/action_confirmation.html", context)


def report_result(modeladmin, request, result: BulkResult) -> None:
    """Tell the operator how many rows changed, and which were skipped and why."""
    modeladmin.message_user(request, _("%(count)d changed: %(ids)s") % {
        "count": len(result.changed), "ids": ", ".join(result.changed) or "-"},
        messages.SUCCESS if result.changed else messages.INFO)
    if result.pending:
        details = "; ".join(f"{label}: {message}" for label, message in result.pending.items())
        modeladmin.message_user(request, _("%(count)d waiting for a second approver: %(details)s") % {
            "count": len(result.pending), "details": details}, messages.WARNING)
    if result.skipped:
        details = "; ".join(f"{label}: {reason}" for label, reason in result.skipped.items())
        modeladmin.message_user(request, _("%(count)d skipped: %(details)s") % {
            "count": len(result.skipped), "details": details}, messages.WARNING)
