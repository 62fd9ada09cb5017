"""Confound audit: does the model see disease, or the hospital and age the image came from?

Four checks on cached features (all with the ``logreg`` head, so they take seconds):
- source probe: within one class, how well do the features tell the images' sources apart
  (patient-grouped cross-validated ROC AUC)?  0.5 means the source is invisible;
- lungs-masked control: black out the central lung field, re-extract, re-fit on the same
  folds: how much 3-class accuracy remains without the lungs?
- leave-one-site-out: train without one covid site, test on it: covid sensitivity there;
- adult check: of the adult non-covid radiographs, what fraction is called covid?
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from urllib.parse import urlparse

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedGroupKFold

from featx.data.dataset import CLASSES
from featx.evaluation.crossval import out_of_fold_proba
from featx.evaluation.metrics import COVID, point_metrics
from featx.evaluation.splits import Protocol, fold_of_each_image, load_or_make_split
from featx.features.extract import extract
from featx.features.identity import FeatureSpec
from featx.features.store import load_features
from featx.heads.registry import make_head

AUDIT_HEAD = "logreg"
MIN_SITE_COVID = 15


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


def source_probe(features, table, label: str, folds: int = 5, seed: int = 0) -> dict:
    """Patient-grouped CV AUC of telling the two largest sources apart within class ``label``."""
    rows = np.flatnonzero((table["label"] == label).to_numpy())
    sources = image_sources(table).to_numpy()[rows]
    counts = pd.Series(sources).value_counts()
    result = {"class": label, "sources": counts.to_dict()}
    if len(counts) < 2 or counts.iloc[1] < 2:
        return {**result, "auc": None, "note": "fewer than two sources with two images each"}
    first, second = counts.index[:2]
    keep = rows[np.isin(sources, [first, second])]
    y = (image_sources(table).to_numpy()[keep] == second).astype(int)
    groups = table["patient_id"].astype(str).to_numpy()[keep]
    scores = np.zeros(len(keep))
    for train, test in _grouped_folds(y, groups, folds, seed):
        model = make_head(AUDIT_HEAD).fit(features[keep][train], y[train])
        scores[test] = model.predict_proba(features[keep][test])[:, 1]
    return {**result, "auc": float(roc_auc_score(y, scores)), "compared": [str(first), str(second)]}


def lungs_masked_control(plain, masked, y, fold) -> dict:
    """3-class accuracy and covid AUC with and without the lung field, same folds and head."""
    with_lungs = point_metrics(y, out_of_fold_proba(plain, y, fold, lambda: make_head(AUDIT_HEAD))[0])
    without = point_metrics(y, out_of_fold_proba(masked, y, fold, lambda: make_head(AUDIT_HEAD))[0])
    return {
        "accuracy_3class": with_lungs["accuracy_3class"],
        "accuracy_3class_masked": without["accuracy_3class"],
        "auc_covid": with_lungs["auc_covid"],
        "auc_covid_masked": without["auc_covid"],
        "chance_3class": float(np.bincount(y).max() / len(y)),
    }


def leave_one_site_out(features, table, min_covid: int = MIN_SITE_COVID) -> list[dict]:
    """Covid sensitivity on each site with enough covid images, trained without that site."""
    y = table["label"].map(CLASSES.index).to_numpy()
    sites = image_sites(table).to_numpy()
    rows = []
    for site in pd.Series(sites[y == COVID]).value_counts().index:
        held_out = sites == site
        if (y[held_out] == COVID).sum() < min_covid:
            continue
        model = make_head(AUDIT_HEAD).fit(features[~held_out], y[~held_out])
        predicted = np.asarray(model.classes_)[model.predict_proba(features[held_out]).argmax(axis=1)]
        covid = y[held_out] == COVID
        rows.append(
            {
                "site": str(site),
                "covid_images": int(covid.sum()),
                "sensitivity": float(np.mean(predicted[covid] == COVID)),
            }
        )
    return rows


def adult_check(table, proba) -> dict:
    """Fraction of adult non-covid radiographs (sources that also hold covid images) called covid."""
    sources = image_sources(table)
    covid_sources = set(sources[table["label"] == "covid"])
    adult = ((table["label"] != "covid") & sources.isin(covid_sources)).to_numpy()
    called_covid = np.asarray(proba).argmax(axis=1) == COVID
    normals = table["label"] == "normal"
    return {
        "adult_non_covid": int(adult.sum()),
        "called_covid": int(called_covid[adult].sum()),
        "fraction_called_covid": float(called_covid[adult].mean()) if adult.any() else None,
        "by_class": {
            label: {
                "images": int((adult & (table["label"] == label).to_numpy()).sum()),
                "called_covid": int((called_covid & adult & (table["label"] == label).to_numpy()).sum()),
            }
            for label in ("pneumonia", "normal")
        },
        "normal_adults": int((normals & sources.isin(covid_sources)).sum()),
        "normal_total": int(normals.sum()),
    }


@dataclass(frozen=True)
class Audit:
    """The four confound checks on one backbone's features, with their provenance.

    Attributes
    ----------
    backbone, weights : str
    input_size : tuple of int
    head : str
        The head every check trains (``logreg``).
    protocol : str
    folds : int
    split_file : str
    dataset : str
        One line describing the audited data.
    source_probe : list of dict
        Per class: ``class``, ``sources`` (name -> images), ``auc`` (None when the class has one source),
        ``compared``.
    lungs_masked : dict
        3-class accuracy and covid AUC with and without the lung field, and the chance level.
    leave_one_site_out : list of dict
        ``site``, ``covid_images``, ``sensitivity``.
    adult_check : dict
        Adult non-covid radiographs and how many are called covid.
    """

    backbone: str
    weights: str
    input_size: tuple
    head: str
    protocol: str
    folds: int
    split_file: str
    dataset: str
    source_probe: list
    lungs_masked: dict
    leave_one_site_out: list
    adult_check: dict

    def to_json(self) -> dict:
        """Every field, JSON-ready."""
        return {**asdict(self), "input_size": list(self.input_size)}


def run_audit(
    dataset, features: FeatureSpec, protocol: Protocol = Protocol(), *, cache_dir="cache", progress: bool = True
) -> Audit:
    """All four checks on ``dataset`` (use the whole folder: it holds the adult non-covid images).

    The features are extracted first where no store holds them, with the lungs masked too.
    """
    extract(dataset, features, cache_dir=cache_dir, progress=progress)
    key = features.key(dataset.id)
    plain = load_features(cache_dir, key, dataset).features
    split, split_file = load_or_make_split(cache_dir, dataset, protocol)
    fold = fold_of_each_image(split, dataset.table["image_id"])
    y = dataset.label_indices()
    proba, _ = out_of_fold_proba(plain, y, fold, lambda: make_head(AUDIT_HEAD))
    masked_features = replace(features, mask="lungs")
    extract(dataset, masked_features, cache_dir=cache_dir, progress=progress)
    masked = load_features(cache_dir, masked_features.key(dataset.id), dataset).features
    table = dataset.table
    return Audit(
        backbone=features.backbone,
        weights=key.weights,
        input_size=features.input_size,
        head=AUDIT_HEAD,
        protocol=protocol.group_by,
        folds=protocol.folds,
        split_file=str(split_file),
        dataset=dataset.describe(),
        source_probe=[source_probe(plain, table, label, seed=protocol.seed) for label in ("pneumonia", "normal")],
        lungs_masked=lungs_masked_control(plain, masked, y, fold),
        leave_one_site_out=leave_one_site_out(plain, table),
        adult_check=adult_check(table, proba),
    )
