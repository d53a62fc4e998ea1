import importlib
from datetime import datetime, timedelta, timezone

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from bundles.client import DeviceIdentity, encode
from devices.models import KeyAlgorithm
from devices.services import register_device
from molam_offline.roles import PAY_ADMIN


@pytest.fixture(autouse=True)
def fast_password_hasher(settings):
    # PBKDF2 at production strength costs about half a second per user on a busy CI machine.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def seeded_data(transactional_db):
    """Restore the roles and country policies that migrations seed.

    The flush after each transactional test removes them. serialized_rollback would
    clash with the AnonymousUser that django-guardian creates again after every flush.
    """
    from django.apps import apps
    from django.contrib.contenttypes.models import ContentType

    from molam_offline.roles import sync_roles

    # The flush gives content types new ids; a cached old id makes django-guardian raise
    # MixedContentTypeError in the next test.
    ContentType.objects.clear_cache()
    sync_roles(apps)
    importlib.import_module("policies.migrations.0002_seed_policies").seed(apps, None)


@pytest.fixture(autouse=True)
def _seed_transactional_tests(request):
    """Give every transactional test the seeded roles and policies (see seeded_data)."""
    marker = request.node.get_closest_marker("django_db")
    transactional = marker is not None and marker.kwargs.get("transaction")
    if transactional or {"transactional_db", "live_server"} & set(request.fixturenames):
        request.getfixturevalue("seeded_data")


@pytest.fixture
def now():
    return datetime.now(timezone.utc).replace(microsecond=0)


@pytest.fixture
def make_user(db):
    def make(username, *, role=None, superuser=False, **extra):
        User = get_user_model()
        if superuser:
            user = User.objects.create_superuser(username, f"{username}@molam.test", "a-long-test-password", **extra)
        else:
            user = User.objects.create_user(username, f"{username}@molam.test", "a-long-test-password",
                                            is_staff=role is not None, **extra)
        if role:
            user.groups.add(Group.objects.get(name=role))
        return user

    return make


@pytest.fixture
def pay_admin(make_user):
    return make_user("payadmin", role=PAY_ADMIN)


@pytest.fixture
def pay_admin_token(pay_admin):
    return Token.objects.create(user=pay_admin).key


@pytest.fixture
def api_client():
    return APIClient()


@pytest.fixture
def make_device(db, pay_admin):
    """Create a DeviceIdentity (with its private key) and register it, unless register=False."""

    def make(device_id="DEVICE_042", *, algorithm=KeyAlgorithm.ED25519, raw_es256=False, register=True,
             country="SN", tenant_type="merchant"):
        identity = DeviceIdentity(device_id=device_id, algorithm=algorithm, raw_es256=raw_es256, country=country,
                                  tenant_type=tenant_type)
        if register:
            register_device(acting_user=pay_admin, **identity.registration())
        return identity

    return make


@pytest.fixture
def sample_bundle(now):
    """Build a sealed, unsigned bundle of `count` payments for a device."""

    def build(identity, count=2, *, created_at=None, amount="1500", start=None, **seal_options):
        start = start or now - timedelta(hours=1)
        transactions = [identity.transaction(amount=amount, sender="+221770000001", receiver="+221770000002",
                                             initiated_at=start + timedelta(minutes=i)) for i in range(count)]
        return identity.seal(transactions, created_at=created_at or now - timedelta(minutes=1), **seal_options)

    return build


@pytest.fixture
def push(api_client, now, django_capture_on_commit_callbacks):
    """Sign a bundle as the device would and POST it; return the response.

    The test's transaction never commits, so the on-commit validation task is run
    explicitly after the response, as a worker would run it after a real commit.
    """

    def do_push(identity, bundle, *, sent_at=None, key=None, body=None):
        if body is None:
            body = encode(identity.sign_for_push(bundle, sent_at=sent_at or now, key=key))
        with django_capture_on_commit_callbacks(execute=True):
            return api_client.generic("POST", "/offline/bundles", body, content_type="application/json")

    return do_push


from tests.processes import redis_server  # noqa: E402,F401  (fixture shared by the worker tests)


@pytest.fixture
def no_fraud_scoring(settings):
    """Score every transaction 0, for tests of checks whose data would look like fraud."""
    settings.SIRA_SCORER = "tests.scorers.ZeroScorer"


def pytest_terminal_summary(terminalreporter):
    """Print the counts of the security and fault batteries (cases, 5xx, partial rows, leaks)."""
    from tests.battery import summary_lines

    lines = summary_lines()
    if lines:
        terminalreporter.section("security and fault batteries")
        for line in lines:
            terminalreporter.write_line(line)
