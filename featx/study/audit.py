"""Confound audit: does the model see disease, or the hospital and age the image came from?

Four checks on cached features (all with the ``logreg`` head, so they take seconds):
- source probe: within one class, how well do the features tell the images' sources apart
  (patient-grouped cross-validated ROC AUC)?  0.5 means the source is invisible;
- lungs-masked control: black out the central lung field, re-extract, re-fit on the same
  folds: how much accuracy remains without the lungs?
- leave-one-site-out: train without one site of positive images, test on it: sensitivity there;
- adult check: of the other-class radiographs from the sources that hold the positive images
  (in the paper's collection, the adults), what fraction is called positive?
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, replace
from functools import partial
from urllib.parse import urlparse

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedGroupKFold

from featx.data.dataset import MANIFEST
from featx.evaluation.metrics import point_metrics
from featx.evaluation.splits import Protocol, fold_of_each_image, load_or_make_split
from featx.evaluation.task import Task
from featx.exceptions import SplitError
from featx.features.extract import extract
from featx.features.identity import FeatureSpec
from featx.features.store import load_features
from featx.heads.family import out_of_fold_proba
from featx.heads.registry import make_head

AUDIT_HEAD = "logreg"
MIN_SITE_POSITIVE = 15


def image_sources(table: pd.DataFrame) -> pd.Series:
    """The collection each image came from: the repository named in ``source`` (``repo@commit:path``)."""
    return table["source"].astype(str).str.split(r"[ @:(]", regex=True).str[0].replace("", "unknown")


def image_sites(table: pd.DataFrame) -> pd.Series:
    """Finer origin: the web site in ``url`` where there is one, else the source collection."""
    urls = table["url"] if "url" in table.columns else pd.Series("", index=table.index)
    domains = urls.astype(str).map(lambda u: urlparse(u).netloc.removeprefix("www.") if u else "")
    return domains.where(domains != "", image_sources(table))


def _grouped_folds(y, groups, folds: int, seed: int):
    smallest = min(len(np.unique(groups[y == value])) for value in np.unique(y))
    k = max(2, min(folds, smallest))
    return StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed).split(np.zeros(len(y)), y, groups)


@dataclass(frozen=True, kw_only=True)
class SourceProbe:
    """How well one class's features tell its two largest sources apart.

    Attributes
    ----------
    label : str
        The class (``class`` in JSON).
    sources : dict of str to int
        Images per source, largest first.
    auc : float or None
        Patient-grouped cross-validated ROC AUC; None when the class has fewer than two sources
        with two images each.
    compared : tuple of str
        The two sources told apart (default: none, when ``auc`` is None).
    note : str or None
        Why there is no AUC (default None).
    """

    label: str
    sources: dict
    auc: float | None
    compared: tuple[str, ...] = ()
    note: str | None = None

    def to_json(self) -> dict:
        """``class``, ``sources``, ``auc``, and ``compared`` or ``note``."""
        probe = {"class": self.label, "sources": self.sources, "auc": self.auc}
        return {**probe, "note": self.note} if self.auc is None else {**probe, "compared": list(self.compared)}


@dataclass(frozen=True, kw_only=True)
class LungsMaskedControl:
    """Accuracy and the positive class's AUC with and without the lung field, same folds and head.

    Attributes
    ----------
    accuracy, accuracy_masked : float
    auc_positive, auc_positive_masked : float
    chance : float
        The majority class's share.
    """

    accuracy: float
    accuracy_masked: float
    auc_positive: float
    auc_positive_masked: float
    chance: float


@dataclass(frozen=True, kw_only=True)
class SiteSensitivity:
    """Sensitivity on one site's positive images, trained without that site.

    Attributes
    ----------
    site : str
    positive_images : int
    sensitivity : float
    """

    site: str
    positive_images: int
    sensitivity: float


@dataclass(frozen=True, kw_only=True)
class ClassCalls:
    """One other class's images from the positive class's sources, and how many are called positive.

    Attributes
    ----------
    images : int
        Of the class, from the positive class's sources.
    called_positive : int
    total : int
        Images of the class.
    """

    images: int
    called_positive: int
    total: int


@dataclass(frozen=True, kw_only=True)
class AdultCheck:
    """Other-class images from the sources that hold the positive images, and how many are called positive.

    Attributes
    ----------
    images, called_positive : int
    fraction_called_positive : float or None
        None when there are no such images.
    by_class : dict of str to ClassCalls
        Per other class.
    """

    images: int
    called_positive: int
    fraction_called_positive: float | None
    by_class: dict[str, ClassCalls]


def source_probe(features, table, label: str, folds: int = 5, seed: int = 0) -> SourceProbe:
    """Patient-grouped CV AUC of telling the two largest sources apart within class ``label``."""
    rows = np.flatnonzero((table["label"] == label).to_numpy())
    sources = image_sources(table).to_numpy()[rows]
    counts = pd.Series(sources).value_counts()
    if len(counts) < 2 or counts.iloc[1] < 2:
        return SourceProbe(
            label=label, sources=counts.to_dict(), auc=None, note="fewer than two sources with two images each"
        )
    first, second = counts.index[:2]
    keep = rows[np.isin(sources, [first, second])]
    y = (image_sources(table).to_numpy()[keep] == second).astype(int)
    groups = table["patient_id"].astype(str).to_numpy()[keep]
    fold = np.zeros(len(keep), dtype=int)
    for k, (_, test) in enumerate(_grouped_folds(y, groups, folds, seed)):
        fold[test] = k
    scores = _out_of_fold(features[keep], y, fold, n_classes=2)[:, 1]
    return SourceProbe(
        label=label,
        sources=counts.to_dict(),
        auc=float(roc_auc_score(y, scores)),
        compared=(str(first), str(second)),
    )


def _out_of_fold(features, y, fold, *, n_classes: int, only=None):
    """Out-of-fold probabilities of the audit's head, folds trained in parallel on every core."""
    return out_of_fold_proba(
        features, y, fold, partial(make_head, AUDIT_HEAD), n_classes=n_classes, jobs=os.cpu_count() or 1, only=only
    )[0]


def lungs_masked_control(plain_proba, masked, y, fold, task: Task) -> LungsMaskedControl:
    """Accuracy and the positive class's AUC with and without the lung field, same folds and head.

    ``plain_proba`` are the out-of-fold probabilities from the features with the lungs (computed
    once by :func:`run_audit`, which the adult check reads too); ``masked`` are the features
    without them.
    """
    with_lungs = point_metrics(y, plain_proba, task)
    without = point_metrics(y, _out_of_fold(masked, y, fold, n_classes=len(task.classes)), task)
    return LungsMaskedControl(
        accuracy=with_lungs["accuracy"],
        accuracy_masked=without["accuracy"],
        auc_positive=with_lungs["auc_positive"],
        auc_positive_masked=without["auc_positive"],
        chance=float(np.bincount(y).max() / len(y)),
    )


def leave_one_site_out(features, table, task: Task, min_positive: int = MIN_SITE_POSITIVE) -> list[SiteSensitivity]:
    """Sensitivity on each site with enough positive images, trained without that site."""
    y = table["label"].map(task.classes.index).to_numpy()
    positive = task.positive_index
    sites = image_sites(table).to_numpy()
    names, site_of_row = np.unique(sites, return_inverse=True)
    positives = np.bincount(site_of_row[y == positive], minlength=len(names))
    tested = [k for k in np.argsort(-positives, kind="stable") if positives[k] >= min_positive]
    predicted = _out_of_fold(features, y, site_of_row, n_classes=len(task.classes), only=tested).argmax(axis=1)
    return [
        SiteSensitivity(
            site=str(names[k]),
            positive_images=int(positives[k]),
            sensitivity=float(np.mean(predicted[(site_of_row == k) & (y == positive)] == positive)),
        )
        for k in tested
    ]


def adult_check(table, proba, task: Task) -> AdultCheck:
    """How many other-class images from the sources that hold the positive images are called positive.

    In the paper's collection those sources are Cohen's adults, and every other image is a child:
    a model that calls most of these adults covid has learnt "adult" more than "covid".
    """
    sources = image_sources(table)
    positive_sources = set(sources[table["label"] == task.positive])
    labels = table["label"].to_numpy()
    from_positive_sources = (labels != task.positive) & sources.isin(positive_sources).to_numpy()
    called = np.asarray(proba).argmax(axis=1) == task.positive_index
    return AdultCheck(
        images=int(from_positive_sources.sum()),
        called_positive=int(called[from_positive_sources].sum()),
        fraction_called_positive=float(called[from_positive_sources].mean()) if from_positive_sources.any() else None,
        by_class={
            label: ClassCalls(
                images=int((from_positive_sources & (labels == label)).sum()),
                called_positive=int((called & from_positive_sources & (labels == label)).sum()),
                total=int((labels == label).sum()),
            )
            for label in task.classes
            if label != task.positive
        },
    )


@dataclass(frozen=True, kw_only=True)
class Audit:
    """The four confound checks on one backbone's features, with their provenance.

    Attributes
    ----------
    task : Task
        The classes and the positive class the checks are about.
    backbone, weights : str
    input_size : tuple of int
    head : str
        The head every check trains (``logreg``).
    protocol : str
    folds : int
    split_file : str
    dataset : str
        One line describing the audited data.
    source_probe : tuple of SourceProbe
        One per class other than the positive one.
    lungs_masked : LungsMaskedControl
    leave_one_site_out : tuple of SiteSensitivity
        One per site with enough positive images.
    adult_check : AdultCheck
    """

    task: Task
    backbone: str
    weights: str
    input_size: tuple
    head: str
    protocol: str
    folds: int
    split_file: str
    dataset: str
    source_probe: tuple[SourceProbe, ...]
    lungs_masked: LungsMaskedControl
    leave_one_site_out: tuple[SiteSensitivity, ...]
    adult_check: AdultCheck

    def to_json(self) -> dict:
        """Every field, JSON-ready (a source probe's label as ``class``)."""
        return {
            **asdict(self),
            "task": self.task.to_json(),
            "input_size": list(self.input_size),
            "source_probe": [probe.to_json() for probe in self.source_probe],
            "leave_one_site_out": [asdict(site) for site in self.leave_one_site_out],
        }


def missing_patients_note(dataset) -> str:
    """Why patient-grouped folds cannot be made on ``dataset``, and what to do."""
    missing = int((dataset.table["patient_id"].astype(str).str.len() == 0).sum())
    return (
        f"{missing} of {len(dataset)} images in {dataset.root} have no patient_id, so patient-grouped folds "
        f"cannot be made; add a patient_id column to {MANIFEST}"
    )


def run_audit(
    dataset,
    feature_spec: FeatureSpec,
    protocol: Protocol = Protocol(),
    *,
    cache_dir="cache",
    positive: str | None = None,
    engine=None,
    progress: bool = True,
) -> Audit:
    """All four checks on ``dataset`` (use the whole folder: in the paper's collection it holds the
    adult non-covid images).

    The features are extracted first where no store holds them, with the lungs masked too.
    ``positive`` names the class the checks are about (default: see :mod:`featx.evaluation.task`);
    ``engine`` extracts them (see :func:`featx.features.extract.extract`).

    Raises
    ------
    SplitError
        Before any extraction, when the folds are grouped by patient and some image has no
        patient id: the source probe and the splits need patients.
    """
    if protocol.group_by == "patient" and not dataset.has_patient_ids:
        raise SplitError(
            f"featx audit groups its folds by patient: {missing_patients_note(dataset)}, or name a folder "
            "that has patient ids with --data"
        )
    task = Task.of(dataset.classes, dataset.table["label"], positive)
    extract(dataset, feature_spec, cache_dir=cache_dir, progress=progress, engine=engine)
    key = feature_spec.key(dataset.id)
    plain = load_features(cache_dir, key, dataset).features
    split, split_file = load_or_make_split(cache_dir, dataset, protocol)
    fold = fold_of_each_image(split, dataset.table["image_id"])
    y = dataset.label_indices()
    proba = _out_of_fold(plain, y, fold, n_classes=len(task.classes))
    masked_features = replace(feature_spec, mask="lungs")
    extract(dataset, masked_features, cache_dir=cache_dir, progress=progress, engine=engine)
    masked = load_features(cache_dir, masked_features.key(dataset.id), dataset).features
    table = dataset.table
    return Audit(
        task=task,
        backbone=feature_spec.backbone,
        weights=key.weights,
        input_size=feature_spec.input_size,
        head=AUDIT_HEAD,
        protocol=protocol.group_by,
        folds=protocol.folds,
        split_file=str(split_file),
        dataset=dataset.describe(),
        source_probe=tuple(
            source_probe(plain, table, label, seed=protocol.seed) for label in task.classes if label != task.positive
        ),
        lungs_masked=lungs_masked_control(proba, masked, y, fold, task),
        leave_one_site_out=tuple(leave_one_site_out(plain, table, task)),
        adult_check=adult_check(table, proba, task),
    )
