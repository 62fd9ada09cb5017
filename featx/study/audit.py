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

from urllib.parse import urlparse

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedGroupKFold

from featx.features.store import collect_features
from featx.data.dataset import CLASSES
from featx.evaluation.crossval import out_of_fold_proba
from featx.exceptions import CacheError
from featx.features.extract import extract, store_identity
from featx.heads.dense import make_head
from featx.evaluation.metrics import COVID, point_metrics
from featx.evaluation.splits import fold_of_each_image, load_or_make_split

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


def lungs_masked_control(dataset, backbone, weights, input_size, features, fold, cache_dir, progress) -> dict:
    """3-class accuracy with and without the lung field, same folds and head."""
    extract(dataset, backbone, weights, input_size, cache_dir=cache_dir, progress=progress, mask="lungs")
    identity = store_identity(dataset, backbone, weights, input_size, mask="lungs")
    masked, missing, _ = collect_features(cache_dir, identity, dataset.table["content_hash"])
    if missing.any():
        raise CacheError(f"{int(missing.sum())} images could not be extracted with the lungs masked")
    y = dataset.label_indices()
    plain = point_metrics(y, out_of_fold_proba(features, y, fold, lambda: make_head(AUDIT_HEAD))[0])
    blind = point_metrics(y, out_of_fold_proba(masked, y, fold, lambda: make_head(AUDIT_HEAD))[0])
    return {
        "accuracy_3class": plain["accuracy_3class"], "accuracy_3class_masked": blind["accuracy_3class"],
        "auc_covid": plain["auc_covid"], "auc_covid_masked": blind["auc_covid"],
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
        rows.append({"site": str(site), "covid_images": int(covid.sum()),
                     "sensitivity": float(np.mean(predicted[covid] == COVID))})
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
        "by_class": {label: {"images": int((adult & (table["label"] == label).to_numpy()).sum()),
                             "called_covid": int((called_covid & adult & (table["label"] == label).to_numpy()).sum())}
                     for label in ("pneumonia", "normal")},
        "normal_adults": int((normals & sources.isin(covid_sources)).sum()),
        "normal_total": int(normals.sum()),
    }


def run_audit(dataset, backbone: str, weights: str = "imagenet", input_size=(200, 266), folds: int = 10,
              seed: int = 0, cache_dir="cache", progress: bool = True) -> dict:
    """All four checks on ``dataset`` (use the whole folder: it holds the adult non-covid images).

    Returns
    -------
    dict
        ``source_probe`` (per class), ``lungs_masked``, ``leave_one_site_out``, ``adult_check``,
        and the provenance (backbone, weights, protocol).
    """
    extract(dataset, backbone, weights, input_size, cache_dir=cache_dir, progress=progress)
    identity = store_identity(dataset, backbone, weights, input_size)
    features, _, _ = collect_features(cache_dir, identity, dataset.table["content_hash"])
    split, split_file = load_or_make_split(cache_dir, dataset, "patient", folds, seed)
    fold = fold_of_each_image(split, dataset.table["image_id"])
    y = dataset.label_indices()
    proba, _ = out_of_fold_proba(features, y, fold, lambda: make_head(AUDIT_HEAD))
    table = dataset.table
    return {
        "backbone": backbone, "weights": identity["weights"], "input_size": list(input_size), "head": AUDIT_HEAD,
        "protocol": "patient", "folds": folds, "split_file": str(split_file), "dataset": dataset.describe(),
        "source_probe": [source_probe(features, table, label, seed=seed) for label in ("pneumonia", "normal")],
        "lungs_masked": lungs_masked_control(dataset, backbone, weights, input_size, features, fold, cache_dir,
                                             progress),
        "leave_one_site_out": leave_one_site_out(features, table),
        "adult_check": adult_check(table, proba),
    }
