"""A head recipe: which head, which imbalance strategy, which settings; validated once."""

from __future__ import annotations

from dataclasses import dataclass

from featx import limits
from featx.exceptions import ParameterError
from featx.heads.registry import get_head, make_head
from featx.heads.sampling import Resampled, get_sampler, with_strategy


@dataclass(frozen=True, kw_only=True)
class HeadRecipe:
    """How to train a head on cached features.

    Attributes
    ----------
    head : str
        A head name (``paper`` resolved already, see :func:`featx.heads.resolve_head`).
    sampler : str
        An imbalance strategy (see :data:`featx.heads.SAMPLERS`).
    epochs, batch_size : int or None
        Dense heads only; None keeps the paper's 10 epochs, batch 64.
    learning_rate : float or None
        Dense heads only; None keeps Adam's 1e-3.
    """

    head: str
    sampler: str = "none"
    epochs: int | None = None
    batch_size: int | None = None
    learning_rate: float | None = None

    def __post_init__(self):
        spec = get_head(self.head)
        if get_sampler(self.sampler).weights_classes and not spec.family.weights_samples:
            raise ParameterError(
                "sampler", self.sampler, f"weights samples, and head {spec.name!r} takes no sample weights"
            )
        for name, value in self.params().items():
            if name not in spec.family.params:
                raise ParameterError(name, value, f"does not apply to head {spec.name!r}")
            limits.check(name, value)

    def params(self) -> dict:
        """The settings given (not None), by name."""
        given = {"epochs": self.epochs, "batch_size": self.batch_size, "learning_rate": self.learning_rate}
        return {name: value for name, value in given.items() if value is not None}

    def build(self, seed: int) -> Resampled:
        """A fresh, unfitted head inside the recipe's imbalance strategy, both seeded by ``seed``."""
        return with_strategy(make_head(self.head, random_state=seed, **self.params()), self.sampler, seed)
