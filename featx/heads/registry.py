"""Registry of heads: name -> family, one-line summary, builder, file format of a saved model.

A plain dict of small frozen specs, like the backbones; the CLI's choices and help and the
tests' parametrisation read it. Besides the registered names, any ``mlpN[-M...]`` names a
dense head with those hidden widths, and ``paper`` names the paper's head for a backbone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from featx import limits
from featx.exceptions import ParameterError, UnknownNameError
from featx.heads import classical
from featx.heads.dense import KERAS_PARAMS, MLP_NAME, KerasMLPClassifier, hidden_layers, is_dense_name

PAPER = "paper"


@dataclass(frozen=True)
class HeadSpec:
    """What featx knows about one head.

    Attributes
    ----------
    name : str
    family : str
        ``dense`` (Keras), ``linear``, ``kernel`` or ``trees``.
    summary : str
        One line for help texts.
    build : callable
        ``build(random_state=..., **params)`` returns an unfitted scikit-learn classifier.
    file_format : str
        How a trained head is saved in a model folder: ``keras``, ``xgboost`` or ``skops``.
    explanation : str
        How a prediction is explained (see :data:`featx.models.explain.METHODS`): ``grad-cam``,
        ``cam`` (exact for a linear head) or ``occlusion`` (model-agnostic).
    params : tuple of str
        Settings a user may change (dense heads: epochs, batch size, learning rate).
    uses_cores : bool
        Whether one fit already keeps every core busy (then folds are trained one at a time).
    """

    name: str
    family: str
    summary: str
    build: Callable
    file_format: str
    explanation: str
    params: tuple = ()
    uses_cores: bool = False


def _dense_spec(name: str) -> HeadSpec:
    hidden = hidden_layers(name)
    summary = (
        "softmax on the features (Keras)"
        if not hidden
        else f"Keras MLP, hidden {'-'.join(map(str, hidden))}, ReLU, dropout between hidden layers"
    )

    def build(random_state=0, **params):
        return KerasMLPClassifier(hidden=hidden, random_state=random_state, **params)

    explanation = "cam" if not hidden else "grad-cam"  # a softmax head is linear in the pooled features
    return HeadSpec(name, "dense", summary, build, "keras", explanation, KERAS_PARAMS, uses_cores=True)


HEADS = {
    spec.name: spec
    for spec in (
        *(_dense_spec(name) for name in ("softmax", "mlp1024", "mlp1000", "mlp1000-750")),
        HeadSpec(
            "logreg",
            "linear",
            "logistic regression on standardised features",
            classical.logistic_regression,
            "skops",
            "cam",
        ),
        HeadSpec(
            "svm", "kernel", "RBF SVM, calibrated probabilities", classical.support_vector_machine, "skops", "occlusion"
        ),
        HeadSpec(
            "rf", "trees", "random forest, 300 trees", classical.random_forest, "skops", "occlusion", uses_cores=True
        ),
        HeadSpec(
            "xgb",
            "trees",
            "gradient-boosted trees (xgboost)",
            classical.boosted_trees,
            "xgboost",
            "occlusion",
            uses_cores=True,
        ),
    )
}


def head_names() -> list[str]:
    """Every registered name, then ``paper``."""
    return [*HEADS, PAPER]


def get_head(name: str) -> HeadSpec:
    """The spec of a head name (registered, or any ``mlpN[-M...]``).

    Raises
    ------
    UnknownNameError
        Listing the registered names.
    ParameterError
        When a hidden width of ``mlpN[-M...]`` lies outside ``1..MAX_HEAD_WIDTH``.
    """
    if name in HEADS:
        return HEADS[name]
    if is_dense_name(name):
        check_widths(name)
        return _dense_spec(name)
    raise UnknownNameError("head", name, [*HEADS, "mlpN-M", PAPER])


def check_widths(name: str) -> None:
    """Refuse an ``mlpN[-M...]`` name with a hidden width outside the ``head_width`` domain of :mod:`featx.limits`.

    Raises
    ------
    ParameterError
        Naming the head and the range.
    """
    domain = limits.DOMAINS["head_width"]
    for width in MLP_NAME.fullmatch(name).group(1).split("-"):
        if width != width.lstrip("0") and width != "0":
            raise ParameterError("head", name, "must write its widths without leading zeros (mlp10, not mlp010)")
        if len(width) > len(str(domain.maximum)) or not domain.minimum <= int(width) <= domain.maximum:
            raise ParameterError("head", name, f"must have hidden widths {domain.text()} (units of a dense layer)")


def resolve_head(name: str, backbone: str | None = None) -> str:
    """``name``, or for ``paper`` the paper's head of ``backbone``.

    Raises
    ------
    ParameterError
        For ``paper`` without a backbone.
    UnknownNameError
    """
    if name == PAPER:
        if backbone is None:
            raise ParameterError("head", PAPER, "means the paper's head for a backbone; pass backbone=NAME")
        from featx.backbones.registry import get_spec

        return get_spec(backbone).paper_head
    return get_head(name).name


def make_head(name: str, *, backbone: str | None = None, random_state: int = 0, **params):
    """Build the unfitted classifier named ``name``.

    Parameters
    ----------
    name : str
        A registered head, ``mlpN[-M...]``, or ``paper`` with ``backbone``.
    backbone : str, optional
        Resolves ``paper``.
    random_state : int
        Seed of the head's own randomness.
    **params
        Dense heads take ``epochs``, ``batch_size``, ``learning_rate``.

    Raises
    ------
    UnknownNameError, ParameterError
        Also when ``random_state`` or a parameter lies outside its domain in :mod:`featx.limits`.
    """
    spec = get_head(resolve_head(name, backbone))
    unknown = sorted(set(params) - set(spec.params))
    if unknown:
        raise ParameterError(
            unknown[0],
            params[unknown[0]],
            f"does not apply to head {spec.name!r} (it takes {', '.join(spec.params) or 'none'})",
        )
    checked = {parameter: limits.check(parameter, value) for parameter, value in params.items()}
    return spec.build(random_state=limits.check("seed", random_state), **checked)
