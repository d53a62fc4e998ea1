"""The four operator roles and the model permissions each job needs.

Country scoping comes on top of these, per object, through django-guardian.
"""

PAY_ADMIN = "pay_admin"
OPS = "ops"
FRAUD = "fraud"
ENGINEER = "engineer"

ROLE_PERMISSIONS = {
    PAY_ADMIN: [
        "devices.add_device", "devices.change_device", "devices.view_device", "devices.replace_device_key",
        "policies.add_policy", "policies.change_policy", "policies.view_policy",
        "audit.view_auditlog",
    ],
    OPS: [
        "devices.view_device", "devices.view_deviceactivity",
        "bundles.view_bundle", "bundles.view_transaction", "bundles.review_bundle", "bundles.requeue_bundle",
        "bundles.view_sequenceanomaly", "policies.view_policy", "audit.view_auditlog",
        "reconciliation.view_syncqueueitem",
    ],
    FRAUD: [
        "devices.view_device", "devices.view_deviceactivity", "devices.block_device",
        "bundles.view_bundle", "bundles.view_transaction", "bundles.review_bundle",
        "bundles.view_sequenceanomaly", "policies.view_policy", "audit.view_auditlog",
    ],
    ENGINEER: [
        "devices.view_device", "devices.view_deviceactivity", "bundles.view_bundle", "bundles.view_transaction",
        "bundles.requeue_bundle", "bundles.view_sequenceanomaly", "policies.view_policy", "audit.view_auditlog",
        "reconciliation.view_syncqueueitem",
    ],
}


def sync_roles(apps) -> None:
    """Create the role groups and set their permissions to exactly ROLE_PERMISSIONS."""
    from django.contrib.auth.management import create_permissions

    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None

    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for role, codenames in ROLE_PERMISSIONS.items():
        group, _ = Group.objects.get_or_create(name=role)
        permissions = []
        for dotted in codenames:
            app_label, codename = dotted.split(".")
            permissions.append(Permission.objects.get(content_type__app_label=app_label, codename=codename))
        group.permissions.set(permissions)
