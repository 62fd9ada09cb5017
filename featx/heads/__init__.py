"""Phase-2 heads: the registry (dense heads, classical heads, each with its family) and imbalance strategies."""

from featx.heads.recipe import HeadRecipe
from featx.heads.registry import HEADS, HeadSpec, get_head, head_names, make_head, resolve_head
from featx.heads.sampling import SAMPLERS, get_sampler, with_strategy

__all__ = [
    "HEADS",
    "SAMPLERS",
    "HeadRecipe",
    "HeadSpec",
    "get_head",
    "get_sampler",
    "head_names",
    "make_head",
    "resolve_head",
    "with_strategy",
]
