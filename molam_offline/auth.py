"""Authentication backends."""

from axes.backends import AxesStandaloneBackend


class LoginThrottleBackend(AxesStandaloneBackend):
    """Reject logins of a locked username or address (django-axes), before any password check.

    The admin login and DRF pass the request, so every login over HTTP is throttled.
    Calls without a request (the test client's login(), scripts) carry no client address
    and are let through to the next backend instead of failing.
    """

    def authenticate(self, request, username=None, password=None, **kwargs):
        if request is None:
            return None
        return super().authenticate(request, username=username, password=password, **kwargs)
