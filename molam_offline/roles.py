"""The four operator roles and the model permissions each job needs.

Country scoping comes on top of these, per object, through django-guardian.
"""

PAY_ADMIN = "pay_admin"
OPS = "ops"
FRAUD = "fraud"
ENGINEER = "engineer"

# Approving a four-eyes change needs the permission of the change itself: change_policy
# for a policy limit, review_bundle for a bundle release. No role has
# policies.review_country globally: each user or group is granted countries one by one.
ROLE_PERMISSIONS = {
    # Device registry and country policies; reactivates or deactivates devices (block_device).
    PAY_ADMIN: [
        "devices.add_device", "devices.change_device", "devices.view_device", "devices.replace_device_key",
        "devices.block_device", "devices.view_deviceactivity",
        "policies.add_policy", "policies.change_policy", "policies.view_policy", "policies.view_changerequest",
        "bundles.view_bundle", "bundles.requeue_bundle",
        "audit.view_auditlog",
    ],
    # Review of quarantined and pending-review bundles: approve, reject, requeue.
    OPS: [
        "devices.view_device", "devices.view_deviceactivity",
        "bundles.view_bundle", "bundles.view_transaction", "bundles.review_bundle", "bundles.requeue_bundle",
        "bundles.view_sequenceanomaly", "policies.view_policy", "policies.view_changerequest",
        "audit.view_auditlog", "audit.export_auditlog",
        "reconciliation.view_syncqueueitem", "reconciliation.view_deadletter", "reconciliation.view_ledgeraccount",
        "reconciliation.view_journalentry", "reconciliation.view_workerheartbeat",
    ],
    # Fraud: block devices (in bulk too), reject confirmed fraud, weekly export of rejections.
    FRAUD: [
        "devices.view_device", "devices.view_deviceactivity", "devices.block_device",
        "bundles.view_bundle", "bundles.view_transaction", "bundles.review_bundle",
        "bundles.view_sequenceanomaly", "policies.view_policy", "policies.view_changerequest",
        "audit.view_auditlog", "audit.export_auditlog",
    ],
    # Reconciliation and diagnosis: read everything, requeue bundles after a fix.
    ENGINEER: [
        "devices.view_device", "devices.view_deviceactivity", "bundles.view_bundle", "bundles.view_transaction",
        "bundles.requeue_bundle", "bundles.view_sequenceanomaly", "policies.view_policy", "audit.view_auditlog",
        "reconciliation.view_syncqueueitem", "reconciliation.view_deadletter", "reconciliation.view_ledgeraccount",
        "reconciliation.view_journalentry", "reconciliation.view_workerheartbeat",
    ],
}


def sync_roles(apps) -> None:
    """Create the role groups and set their permissions to ROLE_PERMISSIONS, skipping any not created yet."""
    from django.contrib.auth.management import create_permissions

    for app_config in apps.get_app_configs():
        # create_permissions skips apps without models_module, which is always None in a
        # migration's app registry. The real registry keeps its value, or later flushes
        # would stop recreating content types and permissions.
        original = getattr(app_config, "models_module", None)
        app_config.models_module = original or True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = original

    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for role, codenames in ROLE_PERMISSIONS.items():
        group, _ = Group.objects.get_or_create(name=role)
        permissions = []
        for dotted in codenames:
            app_label, codename = dotted.split(".")
            permission = Permission.objects.filter(content_type__app_label=app_label, codename=codename).first()
            # An earlier migration runs before the models of later permissions exist; the
            # latest migration that calls sync_roles sets them. tests/test_admin_roles.py
            # checks that every listed permission exists after all migrations.
            if permission is not None:
                permissions.append(permission)
        group.permissions.set(permissions)
