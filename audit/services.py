"""Write audit rows. Call inside the transaction that makes the change, so both commit together."""

from django.contrib.auth.base_user import AbstractBaseUser

from .models import AuditLog

SYSTEM_ACTOR = "system"


def actor_name(user: AbstractBaseUser | None) -> str:
    """Name a user the way the runbook's audit rows do: the email, else the username."""
    if user is None or not getattr(user, "is_authenticated", False):
        return SYSTEM_ACTOR
    return user.email or user.get_username()


def record(action: str, *, acting_user: AbstractBaseUser | None = None, actor: str | None = None,
           bundle_id: str | None = None, device_id: str | None = None, country: str = "",
           details: dict | None = None, old_values: dict | None = None, new_values: dict | None = None,
           reason: str = "", ip_address: str | None = None) -> AuditLog:
    """Insert one audit row; `actor` overrides the name taken from `acting_user`."""
    user = acting_user if acting_user is not None and acting_user.is_authenticated else None
    return AuditLog.objects.create(
        action=action,
        actor=actor or actor_name(user),
        actor_user=user,
        bundle_id=bundle_id,
        device_id=device_id,
        country=country or "",
        details=details or {},
        old_values=old_values or {},
        new_values=new_values or {},
        reason=reason,
        ip_address=ip_address,
    )


def last_actor(action: str, *, bundle_id: str | None = None, device_id: str | None = None) -> str | None:
    """Return who last recorded `action` on a bundle or device, for "already done by X" messages."""
    rows = AuditLog.objects.filter(action=action)
    rows = rows.filter(bundle_id=bundle_id) if bundle_id else rows.filter(device_id=device_id)
    return rows.order_by("-created_at", "-id").values_list("actor", flat=True).first()
