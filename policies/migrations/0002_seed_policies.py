from decimal import Decimal

from django.db import migrations

# Senegal and its neighbours, with the currency and time zone that define their days.
# Limits are in each currency's major unit; XOF amounts match the runbook's examples.
SEED = [
    ("SN", "XOF", "Africa/Dakar"),
    ("ML", "XOF", "Africa/Bamako"),
    ("CI", "XOF", "Africa/Abidjan"),
    ("BF", "XOF", "Africa/Ouagadougou"),
    ("NE", "XOF", "Africa/Niamey"),
    ("TG", "XOF", "Africa/Lome"),
    ("BJ", "XOF", "Africa/Porto-Novo"),
    ("GW", "XOF", "Africa/Bissau"),
    ("GN", "GNF", "Africa/Conakry"),
    ("GM", "GMD", "Africa/Banjul"),
    ("MR", "MRU", "Africa/Nouakchott"),
]

# Daily and per-transaction caps, scaled from the XOF values by rough exchange rates.
SCALE = {"XOF": Decimal(1), "GNF": Decimal(14), "GMD": Decimal("0.12"), "MRU": Decimal("0.065")}


def seed(apps, schema_editor):
    Policy = apps.get_model("policies", "Policy")
    for country, currency, timezone in SEED:
        scale = SCALE[currency]
        Policy.objects.get_or_create(country=country, defaults={
            "currency": currency,
            "timezone": timezone,
            "max_offline_per_device_per_day": 50,
            "max_amount_per_device_per_day": (Decimal(500_000) * scale).quantize(Decimal(1)),
            "max_amount_per_transaction": (Decimal(100_000) * scale).quantize(Decimal(1)),
            "max_bundle_age_hours": 72,
            "four_eyes_amount_threshold": (Decimal(1_000_000) * scale).quantize(Decimal(1)),
        })


class Migration(migrations.Migration):
    dependencies = [("policies", "0001_initial")]

    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
