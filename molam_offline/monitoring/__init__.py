"""Operations figures shared by the admin dashboard, the diagnosis commands, /metrics and the alerts.

Each figure of the on-call runbook (docs/operations.md) is computed by one function in `figures`, so the
screen, the terminal and the alert rules always show the same number.
"""
