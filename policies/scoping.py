"""Per-country access: which countries' devices, bundles and audit rows a user may see and act on.

A user has access to a country through the `policies.review_country` object permission on
that country's Policy row, granted with django-guardian to the user or to one of their
groups. Superusers, and users who have the permission globally (not on one object), have
access to every country. Everyone else has access to the countries granted to them only,
possibly none.
"""

from django.core.exceptions import PermissionDenied
from django.utils.translation import gettext as _
from guardian.shortcuts import assign_perm, get_objects_for_user, remove_perm

from .models import Policy

REVIEW_COUNTRY = "policies.review_country"

# Cached on the user object for the length of one request.
_CACHE_ATTRIBUTE = "_molam_allowed_countries"


def allowed_countries(user) -> frozenset[str] | None:
    """Return the country codes that `user` has access to, or None for every country."""
    if user is None or not user.is_authenticated or not user.is_active:
        return frozenset()
    if hasattr(user, _CACHE_ATTRIBUTE):
        return getattr(user, _CACHE_ATTRIBUTE)

    if user.is_superuser or user.has_perm(REVIEW_COUNTRY):
        countries = None
    else:
        policies = get_objects_for_user(user, REVIEW_COUNTRY, klass=Policy, accept_global_perms=False)
        countries = frozenset(policies.values_list("country", flat=True))
    setattr(user, _CACHE_ATTRIBUTE, countries)
    return countries


def holds_country(user, country: str) -> bool:
    """Return whether `user` may see and act on data of `country`; None (the system) may act on all."""
    if user is None:
        return True
    countries = allowed_countries(user)
    return countries is None or country in countries


def require_country(user, country: str) -> None:
    """Raise PermissionDenied unless `user` has access to `country`."""
    if not holds_country(user, country):
        raise PermissionDenied(_("You have no access to country %(country)s.") % {"country": country or "-"})


def require_permission(user, permission: str) -> None:
    """Raise PermissionDenied unless `user` (None is the system) has the model permission."""
    if user is not None and not user.has_perm(permission):
        raise PermissionDenied(_("You do not have the permission %(permission)s.") % {"permission": permission})


def filter_by_country(queryset, user, field: str = "country"):
    """Restrict `queryset` to rows whose `field` is a country that `user` has access to."""
    countries = allowed_countries(user)
    if countries is None:
        return queryset
    return queryset.filter(**{f"{field}__in": sorted(countries)})


def grant_country(user_or_group, country: str) -> None:
    """Let a user or group see and act on `country`'s data."""
    assign_perm(REVIEW_COUNTRY, user_or_group, Policy.objects.get(country=country))
    _forget(user_or_group)


def revoke_country(user_or_group, country: str) -> None:
    remove_perm(REVIEW_COUNTRY, user_or_group, Policy.objects.get(country=country))
    _forget(user_or_group)


def _forget(user_or_group) -> None:
    if hasattr(user_or_group, _CACHE_ATTRIBUTE):
        delattr(user_or_group, _CACHE_ATTRIBUTE)
