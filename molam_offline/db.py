"""Cursors for the few hot statements that Django's default cursor makes slow."""

import psycopg
from django.db import connection


def server_binding_cursor(*, binary_results: bool = False):
    """Return a cursor on Django's connection that sends the parameters apart from the SQL.

    Django's psycopg cursors bind on the client: each parameter, a bundle payload of up
    to MAX_BUNDLE_BYTES included, is quoted into the SQL text in Python and then parsed
    again by PostgreSQL. With server-side binding psycopg sends the values as they are.

    With `binary_results`, rows come in PostgreSQL's binary format and psycopg's C
    loaders read them. Django registers a Python loader for timestamptz text, which
    took about 3 µs per value under the profiler of bench/validation_profile.py. The
    values are the same: aware datetimes in the session's time zone, UTC under Django.

    The cursor shares the connection and so its transaction, and Django's wrapper still
    translates database errors and logs the statement for the tests that count queries.
    """
    connection.ensure_connection()
    cursor = psycopg.Cursor(connection.connection)
    if binary_results:
        cursor.format = psycopg.pq.Format.BINARY
    return connection.make_debug_cursor(cursor) if connection.queries_logged else connection.make_cursor(cursor)
