"""Counts reported by the security and fault batteries, printed at the end of the test run."""

REPORTS: list[tuple[str, dict]] = []


def report(name: str, **counts: int) -> None:
    """Store one battery's counts for the terminal summary (see tests/conftest.py)."""
    REPORTS.append((name, counts))


def summary_lines() -> list[str]:
    return [f"{name}: " + ", ".join(f"{key} {value}" for key, value in counts.items()) for name, counts in REPORTS]
