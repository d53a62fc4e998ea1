from rest_framework.authentication import TokenAuthentication


class BearerTokenAuthentication(TokenAuthentication):
    """DRF token authentication with the `Authorization: Bearer <token>` header the runbook uses."""

    keyword = "Bearer"
