from rest_framework.permissions import BasePermission

from molam_offline.roles import PAY_ADMIN


def is_pay_admin(user) -> bool:
    if not (user and user.is_authenticated and user.is_active):
        return False
    return user.is_superuser or user.groups.filter(name=PAY_ADMIN).exists()


class IsPayAdmin(BasePermission):
    """Allow members of the pay_admin group (and superusers) only."""

    def has_permission(self, request, view):
        return is_pay_admin(request.user)
