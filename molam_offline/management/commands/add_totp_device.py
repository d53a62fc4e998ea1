from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django_otp.plugins.otp_totp.models import TOTPDevice


class Command(BaseCommand):
    help = ("Add a TOTP device to a staff user and print its otpauth:// URL once, for an authenticator app. "
            "The admin asks for its 6-digit codes when MOLAM_REQUIRE_OTP is on.")

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--name", default="authenticator", help="Name of the device, shown in the admin.")

    def handle(self, *args, username, name, **options):
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"User {username!r} not found.")
        if not user.is_staff:
            raise CommandError(f"User {username!r} is not staff; the admin would still refuse them.")

        device = TOTPDevice.objects.create(user=user, name=name, confirmed=True)

        # The URL contains the shared secret: it is shown once, to the person enrolling.
        self.stdout.write(device.config_url)
