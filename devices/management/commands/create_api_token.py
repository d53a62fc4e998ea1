from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError
from rest_framework.authtoken.models import Token

from molam_offline.roles import ROLE_PERMISSIONS


class Command(BaseCommand):
    help = ("Print the API token of a user, creating the token if needed. Use it as "
            "'Authorization: Bearer <token>'. With --role, also add the user to that group.")

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--role", choices=sorted(ROLE_PERMISSIONS), help="Group to add the user to.")
        parser.add_argument("--create", action="store_true", help="Create the user (without a password) if missing.")
        parser.add_argument("--email", default="", help="Email of a user created with --create.")

    def handle(self, *args, username, role, create, email, **options):
        User = get_user_model()
        user = User.objects.filter(username=username).first()
        if user is None:
            if not create:
                raise CommandError(f"User {username!r} not found; pass --create to create it.")
            user = User.objects.create_user(username=username, email=email)
            user.set_unusable_password()
            user.save()

        if role:
            user.groups.add(Group.objects.get(name=role))

        token, _ = Token.objects.get_or_create(user=user)
        self.stdout.write(token.key)
