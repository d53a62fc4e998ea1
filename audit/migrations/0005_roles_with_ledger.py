from django.db import migrations

from molam_offline.roles import sync_roles


def set_roles(apps, schema_editor):
    sync_roles(apps)


class Migration(migrations.Migration):
    """Set the role groups again once the ledger, dead-letter and alert models exist."""

    dependencies = [
        ("audit", "0004_refine_roles"),
        ("reconciliation", "0005_ledger_append_only"),
        ("molam_offline", "0001_alert_state"),
        ("bundles", "0002_transaction_device_time_index"),
    ]

    operations = [migrations.RunPython(set_roles, migrations.RunPython.noop)]
