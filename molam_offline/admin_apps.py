from django.contrib.admin.apps import AdminConfig


class MolamAdminConfig(AdminConfig):
    """django.contrib.admin with MolamAdminSite as admin.site, so every app's admin.py uses it."""

    default_site = "molam_offline.admin_site.MolamAdminSite"
