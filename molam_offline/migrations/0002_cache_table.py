"""Create the molam_cache table of the database cache (throttle counters when CACHE_URL is unset)."""

from django.core.management.commands.createcachetable import Command as CreateCacheTable
from django.db import migrations

CACHE_TABLE = "molam_cache"


def create_cache_table(apps, schema_editor):
    command = CreateCacheTable()
    command.verbosity = 0
    command.create_table(schema_editor.connection.alias, CACHE_TABLE, dry_run=False)


def drop_cache_table(apps, schema_editor):
    schema_editor.execute(f'DROP TABLE IF EXISTS "{CACHE_TABLE}"')


class Migration(migrations.Migration):
    dependencies = [("molam_offline", "0001_alert_state")]

    operations = [migrations.RunPython(create_cache_table, drop_cache_table)]
