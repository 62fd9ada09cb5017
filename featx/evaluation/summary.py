"""The headline numbers of a stored result, with intervals, spread over folds and provenance."""

from __future__ import annotations

from dataclasses import dataclass

from featx.evaluation import calibration
from featx.evaluation.metrics import DESCRIPTIVE, figure_names, summarize
from featx.evaluation.results import Result
from featx.evaluation.task import Task
from featx.features.store import FeatureHealth, stores_health

HEADLINE_KEYS = (*figure_names(), *DESCRIPTIVE, *calibration.FIGURES, "per_class_recall", "confusion", "ci95")
"""What ``fit --json`` and a model folder record of a cross-validation: the figures of
:data:`featx.evaluation.metrics.METRICS` with their aliases, the further figures, calibration, the
per-class recall, the confusion matrix and the intervals."""


@dataclass(frozen=True, eq=False, kw_only=True)
class CVSummary:
    """Cross-validated metrics of one variant, recomputed from its stored predictions.

    Attributes
    ----------
    result : Result
    task : Task
        The result's classes and the positive class the binary figures are about.
    metrics : dict
        :func:`featx.evaluation.metrics.summarize` of the result.
    reused : bool
        True when the result was already stored and nothing was trained.
    health : FeatureHealth or None
        The health of the features the result was computed from (see
        :func:`featx.features.store.stores_health`); None where no store is known (fine-tuning).
        Default None.
    """

    result: Result
    task: Task
    metrics: dict
    reused: bool
    health: FeatureHealth | None = None

    @classmethod
    def of(cls, result: Result, reused: bool, positive: str | None = None) -> CVSummary:
        """Summarise ``result`` for ``positive`` (default: see :mod:`featx.evaluation.task`); bootstrap
        intervals resample its groups; calibration of the positive class's probability."""
        task = Task.of(result.classes, [result.classes[i] for i in result.y_true], positive)
        metrics = summarize(result.y_true, result.proba, result.fold, task, result.groups)
        metrics.update(calibration.calibration_figures(result.y_true, result.proba, task))
        return cls(
            result=result,
            task=task,
            metrics=metrics,
            reused=reused,
            health=stores_health(result.provenance.stores),
        )

    @property
    def degenerate(self) -> bool:
        """Whether the features were degenerate, so that the figures are computed from nothing."""
        return self.health is not None and self.health.degenerate

    @property
    def degenerate_reasons(self) -> tuple:
        """Why the features were degenerate (texts; empty when they were not)."""
        return self.health.reasons if self.degenerate else ()

    @property
    def marking(self) -> str:
        """What a table or report prints in place of the figures (see :attr:`FeatureHealth.marking`); empty
        when they are a result."""
        return self.health.marking if self.degenerate else ""

    def __getitem__(self, name: str):
        """A headline metric by name (``accuracy_3class``, ``sensitivity``, ``ci95``, ...)."""
        return self.metrics[name]

    def to_json(self) -> dict:
        """Headline metrics (fractions), ``ci95``, ``per_fold``, the variant and where things are stored."""
        result = self.result
        return {
            **{key: self.metrics[key] for key in HEADLINE_KEYS},
            "per_fold": {key: {"mean": v["mean"], "std": v["std"]} for key, v in self.metrics["per_fold"].items()},
            "task": self.task.to_json(),
            "protocol": result.variant.protocol.group_by,
            "split_file": result.provenance.split_file,
            "result_file": str(result.path),
            "reused": self.reused,
            "degenerate": self.degenerate,
            "degenerate_reasons": list(self.degenerate_reasons),
            "fit_seconds": result.timings.total_seconds,
            "fit_gflops": result.timings.gflops,
            "variant": result.variant.to_dict(),
        }
