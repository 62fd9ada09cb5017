"""Registry of heads: name -> :class:`~featx.heads.family.HeadSpec` (summary, and the family object that
trains, saves, loads and explains the head; see :mod:`featx.heads.family`).

A plain dict, like the backbones; the CLI's choices and help and the tests' parametrisation read it.
A head is one module defining its :class:`~featx.heads.family.HeadSpec` and one line below. Besides the
registered names, any ``mlpN[-M...]`` names a dense head with those hidden widths, and ``paper`` names
the paper's head for a backbone.
"""

from __future__ import annotations

from featx import limits
from featx.exceptions import ParameterError, UnknownNameError
from featx.heads import classical, knn
from featx.heads.dense import MLP_NAME, dense_spec, is_dense_name
from featx.heads.family import HeadSpec

PAPER = "paper"

HEADS = {
    spec.name: spec
    for spec in (
        *(dense_spec(name) for name in ("softmax", "mlp1024", "mlp1000", "mlp1000-750")),
        classical.LOGREG,
        classical.SVM,
        classical.RF,
        classical.XGB,
        knn.HEAD,
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
        return dense_spec(name)
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
    unknown = sorted(set(params) - set(spec.family.params))
    if unknown:
        raise ParameterError(
            unknown[0],
            params[unknown[0]],
            f"does not apply to head {spec.name!r} (it takes {', '.join(spec.family.params) or 'none'})",
        )
    checked = {parameter: limits.check(parameter, value) for parameter, value in params.items()}
    return spec.family.build(random_state=limits.check("seed", random_state), **checked)
