"""Classical heads on cached features: logistic regression, SVM and random forest (scikit-learn),
gradient-boosted trees (xgboost), and their family (:class:`ClassicalFamily`)."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.preprocessing import LabelEncoder, StandardScaler
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from featx.exceptions import ModelFolderError
from featx.heads.base import ArgmaxPredictMixin, check_sample_weight
from featx.heads.family import FittedHead, HeadSpec, OutOfFold, out_of_fold_proba


def logistic_regression(random_state: int = 0):
    """Multinomial logistic regression (L2, C=0.1) on standardised features."""
    from sklearn.linear_model import LogisticRegression

    return Standardized(LogisticRegression(C=0.1, max_iter=3000, random_state=random_state))


def support_vector_machine(random_state: int = 0):
    """RBF SVM on standardised features, probabilities by sigmoid calibration."""
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.svm import SVC

    return Standardized(CalibratedClassifierCV(SVC(C=1.0, random_state=random_state), ensemble=False))


def random_forest(random_state: int = 0):
    """300 trees, all cores."""
    from sklearn.ensemble import RandomForestClassifier

    return RandomForestClassifier(n_estimators=300, n_jobs=-1, random_state=random_state)


def boosted_trees(random_state: int = 0):
    """Gradient-boosted trees (xgboost), tuned for a 10-fold fit in minutes on two cores."""
    return XGBHead(random_state=random_state)


class Standardized(ArgmaxPredictMixin, ClassifierMixin, BaseEstimator):
    """A classifier fitted on features standardised with the training rows' mean and scale.

    Parameters
    ----------
    estimator : sklearn classifier
        Cloned and fitted in :meth:`fit`.
    """

    def __init__(self, estimator):
        self.estimator = estimator

    def fit(self, X, y, sample_weight=None):
        """Standardise ``X`` and fit a clone of ``estimator``."""
        X, y = validate_data(self, X, y)
        check_classification_targets(y)
        sample_weight = check_sample_weight(sample_weight, X.shape[0])
        self.scaler_ = StandardScaler().fit(X, sample_weight=sample_weight)
        weights = {} if sample_weight is None else {"sample_weight": sample_weight}  # k-NN takes none
        self.estimator_ = clone(self.estimator).fit(self.scaler_.transform(X), y, **weights)
        self.classes_ = self.estimator_.classes_
        return self

    def linear_scores(self) -> np.ndarray:
        """The class logits' coefficients on the raw features, (n_classes, D), of a linear estimator
        (one with ``coef_``): its coefficients over the scale; a binary model's one score is the second
        class's logit, the first's is 0."""
        check_is_fitted(self)
        coefficients = self.estimator_.coef_ / self.scaler_.scale_
        if len(coefficients) == 1:
            coefficients = np.stack([np.zeros_like(coefficients[0]), coefficients[0]])
        return coefficients

    def predict_proba(self, X):
        """Class probabilities, columns in ``classes_`` order."""
        check_is_fitted(self)
        return self.estimator_.predict_proba(self.scaler_.transform(validate_data(self, X, reset=False)))


class XGBHead(ArgmaxPredictMixin, ClassifierMixin, BaseEstimator):
    """Gradient-boosted trees (xgboost) with sklearn's label handling.

    Parameters
    ----------
    n_estimators, max_depth, learning_rate, subsample, colsample_bytree, max_bin : xgboost settings.
        The defaults keep a 10-fold fit on ~1,300 x 1,280 features to a few minutes on two
        cores (xgboost's histogram building costs ~0.2 s a round there at 64 bins).
    random_state : int
    n_jobs : int
    """

    def __init__(
        self,
        n_estimators=100,
        max_depth=3,
        learning_rate=0.2,
        subsample=1.0,
        colsample_bytree=0.5,
        max_bin=64,
        random_state=0,
        n_jobs=2,
    ):
        self.n_estimators = n_estimators
        self.max_depth = max_depth
        self.learning_rate = learning_rate
        self.subsample = subsample
        self.colsample_bytree = colsample_bytree
        self.max_bin = max_bin
        self.random_state = random_state
        self.n_jobs = n_jobs

    def fit(self, X, y, sample_weight=None):
        """Fit on features ``X`` (N, D) and labels ``y``."""
        from xgboost import XGBClassifier

        X, y = validate_data(self, X, y)
        check_classification_targets(y)
        sample_weight = check_sample_weight(sample_weight, X.shape[0])
        self.encoder_ = LabelEncoder().fit(y)
        self.classes_ = self.encoder_.classes_
        encoded = self.encoder_.transform(y)
        self.model_ = XGBClassifier(
            n_estimators=self.n_estimators,
            max_depth=self.max_depth,
            learning_rate=self.learning_rate,
            subsample=self.subsample,
            colsample_bytree=self.colsample_bytree,
            max_bin=self.max_bin,
            random_state=self.random_state,
            n_jobs=self.n_jobs,
            tree_method="hist",
            objective="multi:softprob" if len(self.classes_) > 2 else "binary:logistic",
        )
        self.model_.fit(X, encoded, sample_weight=sample_weight)
        return self

    def predict_proba(self, X):
        """Class probabilities, columns in ``classes_`` order."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False)
        proba = self.model_.predict_proba(X)
        return proba if proba.ndim == 2 else np.column_stack([1 - proba, proba])


@dataclass(frozen=True, kw_only=True)
class SkopsFile:
    """A scikit-learn head saved in skops format, loaded only when every type it names is trusted.

    Attributes
    ----------
    trusted : frozenset of str
        Types beyond skops' own trusted ones that the head's file may name (the head's own classes).
    name : str
        The file name, ``head.skops``.
    """

    trusted: frozenset[str] = frozenset()
    name: str = "head.skops"

    def save(self, head, path: Path) -> None:
        """Write ``head``."""
        import skops.io

        skops.io.dump(head, path)

    def load(self, path: Path):
        """The head at ``path``.

        Raises
        ------
        ModelFolderError
            When the file names a type outside skops' trusted ones and :attr:`trusted`.
        """
        import skops.io

        untrusted = set(skops.io.get_untrusted_types(file=path))
        refused = sorted(untrusted - self.trusted)
        if refused:
            raise ModelFolderError(f"{path}: refused, it names types featx does not trust: {', '.join(refused)}")
        return skops.io.load(path, trusted=sorted(untrusted))


@dataclass(frozen=True, kw_only=True)
class XGBoostFile:
    """An xgboost head saved in xgboost's own JSON format (``head.xgb.json``)."""

    name: str = "head.xgb.json"

    def save(self, head: XGBHead, path: Path) -> None:
        """Write ``head``'s booster."""
        head.model_.save_model(path)

    def load(self, path: Path):
        """The booster at ``path``, predicting probabilities of the classes it was trained on."""
        from xgboost import XGBClassifier

        booster = XGBClassifier()
        booster.load_model(path)
        return booster


@dataclass(frozen=True, kw_only=True)
class ClassicalFamily:
    """Heads that are scikit-learn classifiers: each fold fits the recipe's strategy around a fresh head
    (:class:`featx.heads.sampling.Resampled`); folds train in parallel unless one fit keeps every core busy.

    Attributes
    ----------
    build : callable
        ``build(random_state=...)`` returns the unfitted classifier.
    file : SkopsFile or XGBoostFile
        How the fitted head is saved in a model folder.
    explanation : str
        ``cam`` (exact for a linear head) or ``occlusion`` (model-agnostic).
    uses_cores : bool
        Whether one fit already keeps every core busy (then folds are trained one at a time); default False.
    params : tuple of str
        Settings a user may change: none.
    """

    build: Callable
    file: SkopsFile | XGBoostFile
    explanation: str
    uses_cores: bool = False
    params: tuple[str, ...] = ()

    @property
    def weights_samples(self) -> bool:
        """Whether the head's ``fit`` takes sample weights (which the ``class-weight`` strategy needs)."""
        from sklearn.utils.validation import has_fit_parameter

        return has_fit_parameter(self.build(), "sample_weight")

    @property
    def file_name(self) -> str:
        """The head's file in a model folder."""
        return self.file.name

    def fit(self, features, y, recipe, *, seed: int, n_classes: int, fold: int = 0) -> FittedHead:
        """Fit the recipe's strategy and head on ``features`` and class indices ``y``: what each fold of
        :meth:`out_of_fold` does with its rows (``n_classes`` and ``fold`` do not change a classical fit)."""
        head = recipe.build(seed).fit(features, y).head_
        return FittedHead(predictor=head, classes=tuple(int(c) for c in head.classes_))

    def out_of_fold(
        self, features, y, fold, recipe, *, seed: int, n_classes: int, jobs: int | None = None, progress: bool = False
    ) -> OutOfFold:
        """Out-of-fold probabilities (see :func:`featx.heads.family.out_of_fold_proba`), ``jobs`` folds at
        once (default: one per core) unless the head keeps every core busy itself."""
        proba, seconds = out_of_fold_proba(
            features,
            y,
            fold,
            partial(recipe.build, seed),
            n_classes=n_classes,
            jobs=1 if self.uses_cores else (jobs or os.cpu_count() or 1),
            progress=progress,
        )
        return OutOfFold(proba=proba, fold_seconds=tuple(seconds))

    def save(self, predictor, folder) -> str:
        """Write the fitted head into ``folder``; return the file name."""
        self.file.save(predictor, Path(folder) / self.file.name)
        return self.file.name

    def load(self, path):
        """The head saved at ``path`` (see :attr:`file`)."""
        return self.file.load(Path(path))


STANDARDIZED = "featx.heads.classical.Standardized"
LOGREG = HeadSpec(
    name="logreg",
    summary="logistic regression on standardised features",
    family=ClassicalFamily(
        build=logistic_regression, file=SkopsFile(trusted=frozenset({STANDARDIZED})), explanation="cam"
    ),
)
SVM = HeadSpec(
    name="svm",
    summary="RBF SVM, calibrated probabilities",
    family=ClassicalFamily(
        build=support_vector_machine,
        file=SkopsFile(
            trusted=frozenset(
                {STANDARDIZED, "sklearn.calibration._CalibratedClassifier", "sklearn.calibration._SigmoidCalibration"}
            )
        ),
        explanation="occlusion",
    ),
)
RF = HeadSpec(
    name="rf",
    summary="random forest, 300 trees",
    family=ClassicalFamily(
        build=random_forest,
        file=SkopsFile(trusted=frozenset({"sklearn.tree._tree.Tree"})),
        explanation="occlusion",
        uses_cores=True,
    ),
)
XGB = HeadSpec(
    name="xgb",
    summary="gradient-boosted trees (xgboost)",
    family=ClassicalFamily(build=boosted_trees, file=XGBoostFile(), explanation="occlusion", uses_cores=True),
)
