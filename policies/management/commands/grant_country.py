from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError

from policies.models import Policy
from policies.scoping import grant_country, revoke_country


class Command(BaseCommand):
    help = ("Let a user or group see and act on the devices, bundles and audit rows of countries in the admin "
            "(the policies.review_country permission on each country's policy).")

    def add_arguments(self, parser):
        parser.add_argument("name", help="Username, or group name with --group.")
        parser.add_argument("countries", nargs="+", help="Two-letter country codes that have a policy, e.g. SN ML.")
        parser.add_argument("--group", action="store_true", help="Grant to the group NAME instead of a user.")
        parser.add_argument("--revoke", action="store_true", help="Take the countries away instead.")

    def handle(self, *args, name, countries, group, revoke, **options):
        model = Group if group else get_user_model()
        lookup = {"name": name} if group else {get_user_model().USERNAME_FIELD: name}
        holder = model.objects.filter(**lookup).first()
        if holder is None:
            raise CommandError(f"{'Group' if group else 'User'} {name!r} not found.")

        codes = [code.upper() for code in countries]
        missing = sorted(set(codes) - set(Policy.objects.filter(country__in=codes).values_list("country", flat=True)))
        if missing:
            raise CommandError(f"No policy for {', '.join(missing)}: create the country's policy first.")

        for code in codes:
            (revoke_country if revoke else grant_country)(holder, code)
        self.stdout.write(f"{'Revoked' if revoke else 'Granted'} {', '.join(codes)} for {name}.")
