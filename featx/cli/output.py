"""What a command prints: human lines on stdout, or under ``--json`` one JSON object on stdout and
the human lines on stderr."""

from __future__ import annotations

import json
import math
import sys


def finite(value):
    """JSON has no NaN or infinity: undefined numbers (a PPV with no positive call, say) and infinite ones
    (a test statistic without variance) become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(item) for item in value]
    return value


def emit(args, payload: dict, lines) -> None:
    """Print a command's result.

    Parameters
    ----------
    args : argparse.Namespace
        ``args.json`` chooses the form.
    payload : dict
        The result as JSON (NaN becomes null).
    lines : iterable of str
        The result for people.
    """
    human = sys.stderr if args.json else sys.stdout
    for line in lines:
        print(line, file=human)
    if args.json:
        print(json.dumps(finite(payload), default=str, allow_nan=False))


def metrics_lines(summary) -> list[str]:
    """Three lines: the variant, its headline figures with 95% intervals (or, from degenerate features, the
    words that say they are not a result: :attr:`CVSummary.marking`), where the result is."""
    from featx.evaluation.metrics import METRICS

    metrics, task = summary.metrics, summary.task
    if summary.degenerate:
        figures = [summary.marking]
    else:
        figures = [
            f"{metric.abbreviation_for(task)} "
            f"{metric.unit.with_interval(metrics[key], metrics['ci95'][key], precise=True)}"
            for key, metric in METRICS.items()
        ]
    result = summary.result
    timing = "reused stored result" if summary.reused else f"fit in {result.timings.total_seconds:.1f}s"
    label = " RANDOM-INIT" if result.variant.weights_label == "random-init" else ""
    return [f"{result.variant.describe()}{label} ({timing})", "; ".join(figures), f"result: {result.path}"]
