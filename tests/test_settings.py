"""Settings read from the environment: production refuses to start without its database."""

import subprocess
import sys

from tests.processes import BASE_DIR

LOAD_SETTINGS = "import django; django.setup(); from django.conf import settings; print(settings.DATABASES['default']['HOST'])"


def run_with(env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", LOAD_SETTINGS], cwd=BASE_DIR, capture_output=True, text=True,
                          timeout=60, env={"PATH": "/usr/bin:/bin", "DJANGO_SETTINGS_MODULE": "molam_offline.settings",
                                           **env})


def test_production_without_database_url_fails():
    result = run_with({"DJANGO_SECRET_KEY": "a-test-secret"})

    assert result.returncode != 0
    assert "DATABASE_URL is missing" in result.stderr


def test_production_settings_load_without_database_connection():
    # The Dockerfile runs collectstatic with a placeholder URL: loading settings must not connect.
    result = run_with({"DJANGO_SECRET_KEY": "a-test-secret", "DATABASE_URL": "postgres://unused/unused"})

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "unused"
