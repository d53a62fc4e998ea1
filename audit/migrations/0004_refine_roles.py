from django.db import migrations

from molam_offline.roles import sync_roles


def refine_roles(apps, schema_editor):
    sync_roles(apps)


class Migration(migrations.Migration):
    """Set the role groups to the permissions of the back office (export, change requests, blocks)."""

    dependencies = [
        ("audit", "0003_export_permission"),
        ("audit", "0002_roles"),
        ("policies", "0003_change_requests_and_country_permission"),
    ]

    operations = [migrations.RunPython(refine_roles, migrations.RunPython.noop)]
