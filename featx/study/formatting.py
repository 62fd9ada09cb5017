"""How numbers are written in featx's tables and reports."""

from __future__ import annotations


def percent(value) -> str:
    """A fraction as a percentage with one decimal; ``n/a`` for None or NaN."""
    return "n/a" if value is None or value != value else f"{value * 100:.1f}"
