"""External validation: a trained model on a labelled folder from sources it never saw, beside its own
cross-validated estimate.

The external figures carry the same names as ``fit --json`` and are null where the classes present
do not define them (a covid-only folder has a sensitivity but no specificity). Images that the model
was trained on (same content hash) are excluded and counted; files that cannot be decoded are listed
and skipped.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from featx.evaluation.calibration import reliability
from featx.evaluation.metrics import METRICS, bootstrap_intervals, defined_figures, point_metrics
from featx.evaluation.task import Task
from featx.exceptions import DatasetError
from featx.features.extract import SkippedImage
from featx.features.store import FeatureHealth
from featx.fileio import write_csv
from featx.models.predict import LoadedModel, read_pixels

log = logging.getLogger(__name__)


def defined_metrics(present: set, task: Task) -> dict:
    """Which figures the classes present (indices into ``task.classes``) allow."""
    return {**defined_figures(present, task), "auc_macro": len(present) >= 2, "ppv": True, "npv": True}


def external_metrics(y_true, proba, groups, task: Task) -> dict:
    """The figures of one set of predictions, null where undefined, with 95% bootstrap intervals.

    Parameters
    ----------
    y_true : array of int
    proba : array of float, (N, len(task.classes))
    groups : array of str
        The bootstrap unit of each image (its patient where known).
    task : Task

    Returns
    -------
    dict
        The metric names of ``fit --json`` (fractions or None), ``ci95`` (name -> [low, high] or
        None), ``confusion``, ``per_class_recall`` (classes present only), ``ece_positive``,
        ``ece_covid`` and ``reliability_positive``.
    """
    y_true, proba = np.asarray(y_true), np.asarray(proba)
    allowed = defined_metrics(set(np.unique(y_true).tolist()), task)
    point = point_metrics(y_true, proba, task)
    intervals = bootstrap_intervals(y_true, proba, task, groups)
    figures = {name: _finite(point[name]) if ok else None for name, ok in allowed.items()}
    calibration = reliability(y_true == task.positive_index, proba[:, task.positive_index])
    return {
        **figures,
        "ci95": {name: intervals[name] if figures.get(name) is not None else None for name in intervals},
        "confusion": point["confusion"],
        "per_class_recall": point["per_class_recall"],
        "ece_positive": _finite(calibration.ece),
        "ece_covid": _finite(calibration.ece) if task.is_covid else None,
        "reliability_positive": calibration.to_json(),
    }


def _finite(value):
    return None if value is None or value != value else float(value)


def compare(external: dict, cv: dict) -> dict:
    """Per headline figure both have: external, CV, the difference, and whether their 95% intervals overlap."""
    rows = {}
    for name in METRICS:
        if external.get(name) is None or cv.get(name) is None:
            continue
        low, high = external["ci95"][name]
        cv_low, cv_high = cv["ci95"][name]
        rows[name] = {
            "external": external[name],
            "cv": cv[name],
            "difference": external[name] - cv[name],
            "intervals_overlap": bool(low <= cv_high and cv_low <= high),
        }
    return rows


@dataclass(frozen=True, kw_only=True)
class Validation:
    """A model's external figures beside its cross-validated ones.

    Attributes
    ----------
    model_dir : str
    task : Task
        The model's classes and the positive class.
    data : str
        The external folder, described.
    images : int
        Images in the external figures.
    skipped : list of SkippedImage
        Each file that could not be decoded, by image id, with the reason.
    excluded_overlap : list of str
        Image ids left out because the model was trained on the same content.
    external : dict
        :func:`external_metrics`.
    cv : dict
        The model folder's cross-validation record in its manifest's form (the figures by name, or a note).
    comparison : dict
        :func:`compare`.
    predictions : pandas.DataFrame
        ``image_id``, ``label``, ``p_<class>``, ``predicted`` of every image in the figures.
    health : FeatureHealth or None
        Of the features the model computed for the external images (None for a fine-tuned model);
        degenerate features make the figures no result. Default None.
    """

    model_dir: str
    task: Task
    data: str
    images: int
    skipped: list[SkippedImage]
    excluded_overlap: list
    external: dict
    cv: dict
    comparison: dict
    predictions: pd.DataFrame = field(repr=False)
    health: FeatureHealth | None = None

    @property
    def degenerate(self) -> bool:
        """Whether the external features were degenerate (see :attr:`health`)."""
        return self.health is not None and self.health.degenerate

    def to_json(self) -> dict:
        """``external`` and ``cv`` with the metric names of ``fit --json``, the comparison and the counts."""
        return {
            "model_dir": self.model_dir,
            "task": self.task.to_json(),
            "data": self.data,
            "images": self.images,
            "skipped": [{"file": image.image_id, "reason": image.reason} for image in self.skipped],
            "excluded_overlap": len(self.excluded_overlap),
            "excluded_images": self.excluded_overlap,
            "external": self.external,
            "cv": self.cv,
            "comparison": self.comparison,
            "degenerate": self.degenerate,
            "degenerate_reasons": list(self.health.reasons) if self.degenerate else [],
        }


def validate(model_dir, dataset, *, batch_size: int = 32, cache_dir=None) -> Validation:
    """Run the model in ``model_dir`` over the labelled ``dataset`` and compare with its CV estimate.

    The binary figures are about the model's own positive class (recorded when it was trained).
    The images become pixels by the model's own image record (see :func:`featx.models.predict.read_pixels`);
    with ``cache_dir`` (default none) they are kept in its pixel cache, so a repeated validation
    decodes nothing.

    Raises
    ------
    DatasetError
        When the folder holds a label the model does not predict, or no image is left to validate
        on (all skipped, or all seen in training).
    """
    model = LoadedModel(model_dir, batch_size)
    task = Task(classes=model.manifest.classes, positive=model.manifest.positive)
    unknown = sorted(set(dataset.classes) - set(task.classes))
    if unknown:
        raise DatasetError(
            f"{dataset.root}: label(s) {', '.join(unknown)} are not among the model's classes "
            f"({', '.join(task.classes)})"
        )
    table = dataset.table
    seen = np.isin(table["content_hash"], list(model.manifest.training_images))
    excluded = list(table["image_id"][seen])
    if excluded:
        log.warning("%d external image(s) have the same content as training images and are excluded", len(excluded))
    candidates = table[~seen].reset_index(drop=True)
    model.check_memory(len(candidates))
    decoded, failures = read_pixels(candidates["path"], model.image, candidates["content_hash"], cache_dir=cache_dir)
    skipped = [
        SkippedImage(image_id=candidates["image_id"].iat[position], reason=reason) for position, reason in failures
    ]
    for image in skipped:
        log.warning("skipped %s: %s", image.image_id, image.reason)
    used = candidates.iloc[[position for position, _ in decoded]].reset_index(drop=True)
    if used.empty:
        raise DatasetError(
            f"{dataset.root}: no image left to validate on ({len(skipped)} could not be decoded, "
            f"{len(excluded)} were seen in training)"
        )
    proba = model.predict_images([pixels for _, pixels in decoded])
    y_true = used["label"].map(task.classes.index).to_numpy()
    groups = used["patient_id" if dataset.has_patient_ids else "image_id"].astype(str).to_numpy()
    external = external_metrics(y_true, proba, groups, task)
    cv = model.manifest.cross_validation.to_json()
    predictions = pd.DataFrame(
        {
            "image_id": used["image_id"],
            "label": used["label"],
            **{f"p_{name}": proba[:, i] for i, name in enumerate(task.classes)},
            "predicted": [task.classes[i] for i in proba.argmax(axis=1)],
        }
    )
    return Validation(
        model_dir=str(model_dir),
        task=task,
        data=dataset.describe(),
        images=len(used),
        skipped=skipped,
        excluded_overlap=excluded,
        external=external,
        cv=cv,
        comparison=compare(external, cv),
        predictions=predictions,
        health=model.health,
    )


def write_predictions(validation: Validation, out_dir) -> Path:
    """The external predictions as CSV in ``out_dir`` (what every external figure is computed from)."""
    return write_csv(validation.predictions, Path(out_dir) / "predictions.csv")
