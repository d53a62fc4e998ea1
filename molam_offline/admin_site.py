"""The admin site, with a TOTP second factor when settings.MOLAM_REQUIRE_OTP is on."""

from django.conf import settings
from django.contrib.admin import AdminSite
from django.contrib.admin.forms import AdminAuthenticationForm
from django_otp.admin import OTPAdminAuthenticationForm, OTPAdminSite


class MolamAdminSite(OTPAdminSite):
    """Admin site that requests a TOTP token at login and admits only verified staff.

    The setting is read on every request, so tests and deployments can switch it without
    rebuilding the URL configuration. With it off the site is Django's plain admin.
    """

    def __init__(self, name="admin"):
        # OTPAdminSite names itself "otpadmin"; keeping "admin" keeps reverse("admin:...").
        super().__init__(name)

    @property
    def login_form(self):
        return OTPAdminAuthenticationForm if settings.MOLAM_REQUIRE_OTP else AdminAuthenticationForm

    @property
    def login_template(self):
        return "otp/admin111/login.html" if settings.MOLAM_REQUIRE_OTP else None

    def has_permission(self, request):
        if settings.MOLAM_REQUIRE_OTP:
            return super().has_permission(request)
        return AdminSite.has_permission(self, request)
