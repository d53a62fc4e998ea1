from django import template

from bundles.models import BundleStatus

from molam_offline.monitoring.dashboard import STATUS_COLOURS, dashboard_figures
from molam_offline.monitoring.figures import format_duration

register = template.Library()


@register.simple_tag
def molam_dashboard():
    """Return the operations dashboard's figures (cached for a few seconds)."""
    return dashboard_figures()


@register.filter
def duration(value):
    """Format a timedelta as '2h05m', '14m' or '45s'."""
    return format_duration(value)


@register.filter
def status_colour(status):
    return STATUS_COLOURS.get(status, "#9e9e9e")


@register.filter
def status_label(status):
    """Return the translated label of a bundle status code."""
    return BundleStatus(status).label if status in BundleStatus.values else status


@register.filter
def percent(value):
    """Format a 0-to-1 share as a percentage with one decimal."""
    return "-" if value is None else f"{value * 100:.1f}%"


@register.filter
def sees_all_countries(user) -> bool:
    """Return whether `user` has access to every country.

    The dashboard's figures count bundles of all countries, so a reviewer scoped to some
    countries must not see them: even a count would leak another country's activity.
    """
    from policies.scoping import allowed_countries

    return allowed_countries(user) is None
