"""Shared pieces of the operator actions in bundles/actions.py, devices/actions.py and policies/actions.py."""

from dataclasses import dataclass, field

from django.utils.translation import gettext as _


class ActionRefused(Exception):
    """An operator action that was not taken, with a message to show the operator.

    Raised before anything is written, so the caller's transaction has changed nothing.
    """

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class NotFound(ActionRefused):
    """The row does not exist, or it belongs to a country the acting user has no access to."""


def required_note(note: str | None, field_name: str = "note") -> str:
    """Return `note` stripped, or raise ActionRefused when it is empty."""
    note = (note or "").strip()
    if not note:
        raise ActionRefused(_("A %(field)s is required.") % {"field": field_name})
    return note


@dataclass
class BulkResult:
    """Outcome of an action applied to many rows: which changed, which were skipped and why.

    `pending` lists rows whose change waits for a second approver (four eyes).
    """

    changed: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    pending: dict[str, str] = field(default_factory=dict)
