from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from bundles.models import SequenceAnomaly
from molam_offline.actions import ActionRefused
from molam_offline.admin_tools import CountryListFilter, CountryScopedAdmin, ReasonForm, confirm_action, report_result
from molam_offline.api import client_ip

from . import actions
from .models import Device, DeviceActivity


class SequenceAnomalyInline(admin.TabularInline):
    model = SequenceAnomaly
    fields = ["kind", "sequence", "bundle_ids", "detected_at", "resolved_at"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    verbose_name_plural = gettext_lazy("sequence gaps and conflicts")

    def has_add_permission(self, request, obj=None):
        return False


class BlockForm(ReasonForm):
    quarantine_bundles = forms.BooleanField(
        label=gettext_lazy("Quarantine their waiting bundles"), required=False,
        help_text=gettext_lazy("Moves the devices' received and pending-review bundles to quarantine."))


class BulkBlockForm(BlockForm):
    device_ids = forms.CharField(
        label=gettext_lazy("Device IDs"), widget=forms.Textarea(attrs={"rows": 10}),
        help_text=gettext_lazy("One device ID per line, or separated by spaces or commas."))
    field_order = ["device_ids", "reason", "quarantine_bundles"]

    def clean_device_ids(self):
        device_ids = actions.parse_device_ids(self.cleaned_data["device_ids"])
        if not device_ids:
            raise forms.ValidationError(_("Enter at least one device ID."))
        if len(device_ids) > actions.MAX_BULK_DEVICES:
            raise forms.ValidationError(_("At most %(max)d device IDs at once; %(count)d were given.") % {
                "max": actions.MAX_BULK_DEVICES, "count": len(device_ids)})
        return device_ids


class ReplaceKeyForm(ReasonForm):
    pubkey_pem = forms.CharField(label=gettext_lazy("New public key (PEM)"),
                                 widget=forms.Textarea(attrs={"rows": 6, "cols": 70}),
                                 help_text=gettext_lazy("Ed25519 or ECDSA P-256, starting with "
                                                        "-----BEGIN PUBLIC KEY-----."))
    field_order = ["pubkey_pem", "reason"]


@admin.register(Device)
class DeviceAdmin(CountryScopedAdmin):
    list_display = ["device_id", "tenant_type", "tenant_id", "country", "key_alg", "status", "missing_sequence_count",
                    "key_conflict_detected_at", "last_seen_at", "created_at"]
    list_filter = ["status", CountryListFilter, "tenant_type", "key_alg"]
    search_fields = ["device_id", "tenant_id"]
    # Status and key change only through the audited actions, never by editing the form.
    readonly_fields = [f.name for f in Device._meta.fields if f.name != "id"]
    list_select_related = ["registered_by"]
    inlines = [SequenceAnomalyInline]
    show_full_result_count = False
    actions = ["block_selected", "reactivate_selected", "deactivate_selected"]
    change_list_template = "admin/devices/device/change_list.html"
    change_form_template = "admin/devices/device/change_form.html"

    def has_add_permission(self, request):
        # Devices are registered through POST /offline/devices, which checks the key and audits.
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def has_block_permission(self, request):
        return request.user.has_perm(actions.STATUS_PERMISSION)

    def has_replace_key_permission(self, request):
        return request.user.has_perm(actions.KEY_PERMISSION)

    @admin.action(description=gettext_lazy("Block selected devices"), permissions=["block"])
    def block_selected(self, request, queryset):
        return confirm_action(
            self, request, queryset, form_class=BlockForm, title=_("Block devices"),
            apply=lambda device, data: actions.block_device(
                acting_user=request.user, device_id=device.device_id, reason=data["reason"],
                quarantine_bundles=data["quarantine_bundles"], ip_address=client_ip(request)) and None)

    @admin.action(description=gettext_lazy("Reactivate selected devices"), permissions=["block"])
    def reactivate_selected(self, request, queryset):
        return confirm_action(
            self, request, queryset, form_class=ReasonForm, title=_("Reactivate devices"),
            apply=lambda device, data: actions.reactivate_device(
                acting_user=request.user, device_id=device.device_id, reason=data["reason"],
                ip_address=client_ip(request)) and None)

    @admin.action(description=gettext_lazy("Deactivate selected devices"), permissions=["block"])
    def deactivate_selected(self, request, queryset):
        return confirm_action(
            self, request, queryset, form_class=ReasonForm, title=_("Deactivate devices"),
            apply=lambda device, data: actions.deactivate_device(
                acting_user=request.user, device_id=device.device_id, reason=data["reason"],
                ip_address=client_ip(request)) and None)

    def get_urls(self):
        wrap = self.admin_site.admin_view
        return [
            path("bulk-block/", wrap(self.bulk_block_view), name="devices_device_bulk_block"),
            path("<path:object_id>/replace-key/", wrap(self.replace_key_view), name="devices_device_replace_key"),
            *super().get_urls(),
        ]

    def bulk_block_view(self, request):
        """Block devices pasted as a list of IDs, with one reason."""
        if not self.has_block_permission(request):
            raise PermissionDenied

        form = BulkBlockForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                result = actions.block_devices(
                    acting_user=request.user, device_ids=form.cleaned_data["device_ids"],
                    reason=form.cleaned_data["reason"], quarantine_bundles=form.cleaned_data["quarantine_bundles"],
                    ip_address=client_ip(request))
            except ActionRefused as refusal:
                self.message_user(request, refusal.message, messages.ERROR)
            else:
                report_result(self, request, result)
                if result.quarantined_bundle_ids:
                    self.message_user(request, _("%(count)d bundles quarantined: %(ids)s") % {
                        "count": len(result.quarantined_bundle_ids),
                        "ids": ", ".join(result.quarantined_bundle_ids)}, messages.INFO)
                return HttpResponseRedirect(reverse("admin:devices_device_changelist"))

        context = {**self.admin_site.each_context(request), "title": _("Block devices by ID"), "opts": self.opts,
                   "form": form, "intro": _("Every listed device is blocked with the same reason. Devices that are "
                                            "already blocked or not found are skipped and reported.")}
        return TemplateResponse(request, "admin/molam/form_page.html", context)

    def replace_key_view(self, request, object_id):
        """Register a new public key for a device that regenerated its keys."""
        device = self.get_object(request, object_id)
        if not self.has_replace_key_permission(request):
            raise PermissionDenied

        form = ReplaceKeyForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                actions.replace_device_key(acting_user=request.user, device_id=device.device_id,
                                           pubkey_pem=form.cleaned_data["pubkey_pem"],
                                           reason=form.cleaned_data["reason"],
                                           ip_address=client_ip(request))
            except ActionRefused as refusal:
                form.add_error("pubkey_pem", refusal.message)
            else:
                self.message_user(request, _("Key of device %(device)s replaced. Requeue its bundles rejected for "
                                             "an invalid signature to validate them again.") % {
                    "device": device.device_id}, messages.SUCCESS)
                return HttpResponseRedirect(reverse("admin:devices_device_change", args=[device.pk]))

        context = {**self.admin_site.each_context(request), "opts": self.opts, "original": device, "form": form,
                   "title": _("Replace the key of device %(device)s") % {"device": device.device_id},
                   "intro": _("Current key: %(alg)s, fingerprint %(fingerprint)s.") % {
                       "alg": device.key_alg, "fingerprint": device.key_fingerprint}}
        return TemplateResponse(request, "admin/molam/form_page.html", context)


@admin.register(DeviceActivity)
class DeviceActivityAdmin(CountryScopedAdmin):
    country_field = "device__country"
    list_display = ["device", "activity_date", "tx_count", "total_amount", "updated_at"]
    list_filter = ["activity_date", CountryListFilter]
    search_fields = ["device__device_id"]
    list_select_related = ["device"]
    readonly_fields = ["device", "activity_date", "tx_count", "total_amount", "updated_at"]
    show_full_result_count = False

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
