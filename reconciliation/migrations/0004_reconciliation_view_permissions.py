from django.db import migrations

# Ops and engineers watch reconciliation, so they may view the ledger, dead letters and
# worker heartbeats. These are granted here rather than in molam_offline.roles.ROLE_PERMISSIONS:
# the roles migration reads that dict as it is today and runs before these models exist.
ROLES = ("ops", "engineer")
CODENAMES = ("view_ledgeraccount", "view_journalentry", "view_deadletter", "view_workerheartbeat")


def grant(apps, schema_editor):
    from django.contrib.auth.management import create_permissions

    app_config = apps.get_app_config("reconciliation")
    app_config.models_module = True
    create_permissions(app_config, apps=apps, verbosity=0)
    app_config.models_module = None

    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    permissions = list(Permission.objects.filter(content_type__app_label="reconciliation", codename__in=CODENAMES))
    for role in ROLES:
        group, _ = Group.objects.get_or_create(name=role)
        group.permissions.add(*permissions)


class Migration(migrations.Migration):
    dependencies = [
        ("audit", "0002_roles"),
        ("reconciliation", "0003_ledger_and_queue_retry"),
    ]

    operations = [migrations.RunPython(grant, migrations.RunPython.noop)]
