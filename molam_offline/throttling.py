"""Fixed-window API throttles with rates read from settings.API_THROTTLE_RATES.

Each (scope, client, window) pair is one integer counter in the default cache, so a
check costs one add and one incr whatever the rate. DRF's own throttles keep a list of
every request time, which grows with the rate and is rewritten on every request.
NOTE: with the database cache, incr is a read then a write, so concurrent requests can
undercount a little; Redis (CACHE_URL) counts exactly.
"""

import hashlib
import logging
import time

from django.conf import settings
from django.core.cache import cache
from rest_framework.exceptions import Throttled
from rest_framework.throttling import BaseThrottle

from .api import client_ip

logger = logging.getLogger(__name__)

PERIODS = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60, "h": 3600, "hour": 3600,
           "d": 86400, "day": 86400}


def parse_rate(rate: str) -> tuple[int, int]:
    """Parse "count/period" into (count, seconds); raise ValueError for anything else."""
    count, _, period = rate.partition("/")
    if period not in PERIODS or not count.isdigit():
        raise ValueError(f"invalid throttle rate {rate!r}: expected count/period such as 60/min")
    return int(count), PERIODS[period]


def _window(scope: str, ident: str) -> tuple[str, int, int] | None:
    rate = settings.API_THROTTLE_RATES.get(scope)
    if not rate:
        return None
    limit, seconds = parse_rate(rate)
    now = time.time()
    start = int(now // seconds) * seconds
    digest = hashlib.sha256(ident.encode("utf-8")).hexdigest()[:32]
    wait = max(1, int(start + seconds - now) + 1)
    return f"throttle:{scope}:{digest}:{start}", limit, wait


def is_exhausted(scope: str, ident: str) -> int | None:
    """Return the seconds to wait if `ident` used up its `scope` rate, without counting."""
    window = _window(scope, ident)
    if window is None:
        return None
    key, limit, wait = window
    return wait if (cache.get(key) or 0) >= limit else None


def count(scope: str, ident: str) -> int | None:
    """Count one request of `ident`; return the seconds to wait if it is over the rate."""
    window = _window(scope, ident)
    if window is None:
        return None
    key, limit, wait = window
    cache.add(key, 0, timeout=wait + 1)
    try:
        used = cache.incr(key)
    except ValueError:  # The key expired between add and incr: this request opens a new window.
        cache.add(key, 1, timeout=wait + 1)
        used = 1
    if used > limit:
        logger.info("Throttled %s for %s: %d requests over %s", scope, digest_for_log(ident), used,
                    settings.API_THROTTLE_RATES[scope])
        return wait
    return None


def digest_for_log(ident: str) -> str:
    return hashlib.sha256(ident.encode("utf-8")).hexdigest()[:12]


class ScopedThrottle(BaseThrottle):
    """Count each request against settings.API_THROTTLE_RATES[scope], keyed by get_ident()."""

    scope = ""

    def get_ident(self, request) -> str | None:
        raise NotImplementedError

    def allow_request(self, request, view):
        ident = self.get_ident(request)
        if ident is None:
            return True
        self._wait = count(self.scope, ident)
        return self._wait is None

    def wait(self):
        return getattr(self, "_wait", None)


class AddressThrottle(ScopedThrottle):
    def get_ident(self, request) -> str | None:
        return client_ip(request) or "unknown"


class UserThrottle(ScopedThrottle):
    def get_ident(self, request) -> str | None:
        user = request.user
        return f"user:{user.pk}" if user and user.is_authenticated else None


class BundlePushAddressThrottle(AddressThrottle):
    scope = "bundle_push_address"


class RegistrationAddressThrottle(AddressThrottle):
    scope = "registration_address"


class RegistrationUserThrottle(UserThrottle):
    scope = "registration_user"


def check_device_rate(device_id: str) -> None:
    """Raise Throttled when the device used up its push rate; see count_device_push."""
    wait = is_exhausted("bundle_push_device", device_id)
    if wait is not None:
        logger.info("Throttled pushes of device %s", device_id)
        raise Throttled(wait=wait)


def count_device_push(device_id: str) -> None:
    """Count a push whose signature verified against the device's registered key.

    Only verified pushes count, so that nobody can use up a device's rate by sending
    bundles that merely claim its device_id.
    """
    count("bundle_push_device", device_id)
