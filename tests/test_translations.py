"""The French catalogue covers every translatable string of the code base."""

import shutil
import subprocess
import sys
from pathlib import Path

import polib
import pytest

BASE_DIR = Path(__file__).resolve().parent.parent
CATALOGUE = BASE_DIR / "locale" / "fr" / "LC_MESSAGES" / "django.po"
COMPILED = CATALOGUE.with_suffix(".mo")
SOURCE_DIRS = ["molam_offline", "devices", "bundles", "policies", "audit", "reconciliation", "templates"]


@pytest.fixture(scope="module")
def extracted(tmp_path_factory) -> polib.POFile:
    """Run makemessages on a copy of the sources and return the fresh French catalogue."""
    copy = tmp_path_factory.mktemp("i18n")
    for name in SOURCE_DIRS:
        if (BASE_DIR / name).exists():
            shutil.copytree(BASE_DIR / name, copy / name, ignore=shutil.ignore_patterns("__pycache__", "migrations"))
    shutil.copy(BASE_DIR / "manage.py", copy / "manage.py")
    (copy / "locale").mkdir()

    # DATABASE_URL keeps the settings from starting an embedded PostgreSQL for the copy;
    # makemessages never connects to it.
    env = {"MOLAM_QUICKSTART": "1", "DATABASE_URL": "postgres://unused@127.0.0.1:1/unused", "PATH": "/usr/bin:/bin",
           "PYTHONPATH": str(copy)}
    subprocess.run([sys.executable, "manage.py", "makemessages", "-l", "fr", "--no-location", "--no-wrap"],
                   cwd=copy, env=env, check=True, capture_output=True, timeout=120)
    return polib.pofile(str(copy / "locale" / "fr" / "LC_MESSAGES" / "django.po"))


def test_every_string_has_a_french_translation(extracted):
    committed = {(entry.msgctxt, entry.msgid): entry for entry in polib.pofile(str(CATALOGUE))}

    missing = [entry.msgid for entry in extracted
               if (entry.msgctxt, entry.msgid) not in committed
               or not committed[(entry.msgctxt, entry.msgid)].translated()]

    assert missing == [], f"{len(missing)} strings lack a French translation; run bin/makemessages"


def test_compiled_catalogue_matches_source():
    source = {entry.msgid: entry.msgstr for entry in polib.pofile(str(CATALOGUE)) if entry.translated()}
    compiled = {entry.msgid: entry.msgstr for entry in polib.mofile(str(COMPILED)) if entry.msgid}

    assert compiled == source, "locale/fr/LC_MESSAGES/django.mo is stale; run bin/makemessages"


def test_catalogue_placeholders_match():
    # msgfmt --check-format fails when a translation drops or renames a %(name)s placeholder,
    # which would raise KeyError when the French text is formatted.
    result = subprocess.run(["msgfmt", "--check-format", "-o", "/dev/null", str(CATALOGUE)], capture_output=True,
                            text=True, timeout=60)

    assert result.returncode == 0, result.stderr
