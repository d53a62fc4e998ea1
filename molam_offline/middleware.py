"""Middleware that turns a lost PostgreSQL connection into a 503 with Retry-After."""

from .api import DATABASE_UNAVAILABLE_ERRORS, database_unavailable_response


class DatabaseUnavailableMiddleware:
    """Return 503 with Retry-After when a view raises a database connection error.

    DRF views return the same through molam_offline.api.exception_handler. This covers
    the admin and any other Django view.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if isinstance(exception, DATABASE_UNAVAILABLE_ERRORS):
            return database_unavailable_response(exception, request)
        return None
