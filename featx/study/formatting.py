"""How numbers are written in featx's tables and reports."""

from __future__ import annotations


def percent(value) -> str:
    """A fraction as a percentage with one decimal; ``n/a`` for None or NaN."""
    return "n/a" if value is None or value != value else f"{value * 100:.1f}"


def percent_with_interval(metrics: dict, key: str) -> str:
    """``metrics[key]`` as a percentage with its 95% interval from ``metrics['ci95']``."""
    low, high = metrics["ci95"][key]
    return f"{percent(metrics[key])} [{percent(low)}, {percent(high)}]"
