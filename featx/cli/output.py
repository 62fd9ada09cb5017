"""What a command prints: human lines on stdout, or under ``--json`` one JSON object on stdout and
the human lines on stderr."""

from __future__ import annotations

import json
import sys


def finite(value):
    """JSON has no NaN: undefined numbers (a PPV with no positive call, say) become null."""
    if isinstance(value, float) and value != value:
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
    """Three lines: the variant, its headline numbers with 95% intervals, where the result is."""
    ci, task = summary["ci95"], summary.task
    parts = []
    for key, label in (
        ("accuracy", "3-class acc" if task.is_paper else f"acc ({len(task.classes)} classes)"),
        ("accuracy_2class", "2-class acc"),
        ("sensitivity", f"{task.positive} sens"),
        ("specificity", f"{task.positive} spec"),
    ):
        parts.append(f"{label} {summary[key] * 100:.2f}% [{ci[key][0] * 100:.1f}, {ci[key][1] * 100:.1f}]")
    result = summary.result
    timing = "reused stored result" if summary.reused else f"fit in {result.timings.total_seconds:.1f}s"
    label = " RANDOM-INIT" if result.variant.weights_label == "random-init" else ""
    return [
        f"{result.variant.describe()}{label} ({timing})",
        "; ".join(parts) + f"; AUC {task.positive} {summary['auc_positive']:.3f}",
        f"result: {result.path}",
    ]
