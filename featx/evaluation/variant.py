"""A variant: everything that defines one set of out-of-fold predictions.

Phase 2 (a head on cached features) and phase 3 (fine-tuning) both describe their runs with
a :class:`Variant`; its file name carries a hash of every field, so two runs share a stored
result exactly when they are the same experiment.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import Field

from featx.evaluation.splits import PROTOCOLS, Protocol
from featx.exceptions import ParameterError
from featx.features.identity import FeatureSpec, StoreKey
from featx.features.runtime import KERAS
from featx.heads.recipe import HeadRecipe
from featx.limits import MAX_SEED
from featx.records import Text

if TYPE_CHECKING:
    from featx.evaluation.finetune import FinetuneRecipe


@dataclass(frozen=True, kw_only=True)
class VariantRecord(StoreKey):
    """A variant as result files (and model manifests) store it: the store key's fields, flat, and
    the head, its settings, the sampler, the protocol and the subset (see :meth:`Variant.to_dict`)."""

    phase: Literal[2, 3]
    head: Text
    head_params: dict[str, bool | int | float | str | None]
    sampler: Text
    protocol: Literal[tuple(PROTOCOLS)]
    folds: Annotated[int, Field(ge=2)]
    seed: Annotated[int, Field(ge=0, le=MAX_SEED)]
    subset: Text
    head_seed: Annotated[int, Field(ge=0, le=MAX_SEED)] | None = None


@dataclass(frozen=True, kw_only=True)
class Variant:
    """One experiment: features, head recipe, protocol, dataset.

    Attributes
    ----------
    phase : int
        2 (frozen backbone, cached features) or 3 (fine-tuned).
    features : StoreKey
        Backbone, weights, preprocessing (mask included), input size, decoder and precision;
        ``dataset_id`` is the evaluated dataset.
    recipe : HeadRecipe or FinetuneRecipe
        The head (never ``paper``: that is resolved before), its settings and its sampler: a
        :class:`~featx.heads.recipe.HeadRecipe` in phase 2, a
        :class:`~featx.evaluation.finetune.FinetuneRecipe` in phase 3.
    protocol : Protocol
        Default: :class:`Protocol`'s defaults.
    subset : str
        The subset of the data folder the dataset was drawn as (default ``all``).
    head_seed : int, optional
        The seed of the head's own randomness (its initialisation, the sampler) where it differs
        from the folds' (default None: the protocol's seed seeds both). Training the same variant
        under two head seeds on the same folds shows the spread due to the head alone.
    """

    phase: int
    features: StoreKey
    recipe: HeadRecipe | FinetuneRecipe
    protocol: Protocol = Protocol()
    subset: str = "all"
    head_seed: int | None = None

    @property
    def seed_of_head(self) -> int:
        """The seed the head (and sampler) is trained with: ``head_seed``, else the protocol's seed."""
        return self.protocol.seed if self.head_seed is None else self.head_seed

    @property
    def head(self) -> str:
        """The head's name."""
        return self.recipe.head

    @property
    def head_params(self) -> dict:
        """The recipe's settings by name (phase 2: those given; phase 3: every fine-tuning setting)."""
        return self.recipe.params()

    @property
    def sampler(self) -> str:
        """The imbalance strategy (``none`` when fine-tuning)."""
        return self.recipe.sampler

    def to_dict(self) -> dict:
        """The flat JSON form stored in result files."""
        key = self.features
        return {
            "phase": self.phase,
            "backbone": key.backbone,
            "weights": key.weights,
            "weights_sha256": key.weights_sha256,
            "preprocessing": key.preprocessing,
            "input_size": list(key.input_size),
            "decoder": key.decoder,
            "precision": key.precision,
            **({"runtime": key.runtime} if key.runtime != KERAS else {}),  # as before runtimes: names unchanged
            "head": self.head,
            "head_params": self.head_params,
            "sampler": self.sampler,
            "protocol": self.protocol.group_by,
            "folds": self.protocol.folds,
            "seed": self.protocol.seed,
            "dataset_id": key.dataset_id,
            "subset": self.subset,
            **({} if self.head_seed is None else {"head_seed": self.head_seed}),
        }

    @classmethod
    def of(cls, phase: int, dataset, features, recipe, protocol: Protocol, head_seed: int | None = None) -> Variant:
        """The variant of ``recipe`` (a head or fine-tuning recipe) on ``features`` over ``dataset``
        (``head_seed``: see the class; default None, the protocol's seed)."""
        return cls(
            phase=phase,
            features=features.key(dataset.id),
            recipe=recipe,
            protocol=protocol,
            subset=dataset.subset,
            head_seed=head_seed,
        )

    def to_record(self) -> VariantRecord:
        """The record of :meth:`to_dict`'s form."""
        return VariantRecord(**{**self.to_dict(), "input_size": self.features.input_size})

    @classmethod
    def from_record(cls, record: VariantRecord) -> Variant:
        """The variant a record read from a file describes.

        Raises
        ------
        FeatxError
            When the head, its settings or the sampler do not make a recipe of the record's phase
            (the caller names the file).
        """
        if record.phase == 3:
            from featx.evaluation.finetune import FinetuneRecipe as recipe_type

            given = {"head": record.head}
        else:
            recipe_type, given = HeadRecipe, {"head": record.head, "sampler": record.sampler}
        settings = {field.name for field in fields(recipe_type)} - set(given)
        for name, value in record.head_params.items():
            if name not in settings:
                raise ParameterError(name, value, f"is not a setting of a phase-{record.phase} head")
        recipe = recipe_type(**given, **record.head_params)
        if recipe.sampler != record.sampler:
            raise ParameterError("sampler", record.sampler, f"does not apply to phase {record.phase}")
        return cls(
            phase=record.phase,
            features=StoreKey(**{key.name: getattr(record, key.name) for key in fields(StoreKey)}),
            recipe=recipe,
            protocol=Protocol(group_by=record.protocol, folds=record.folds, seed=record.seed),
            subset=record.subset,
            head_seed=record.head_seed,
        )

    def feature_spec(self, weights_source: str = "") -> FeatureSpec:
        """The features request this variant was evaluated on (see :meth:`StoreKey.feature_spec`).

        Parameters
        ----------
        weights_source : str
            The weights file, for a variant of ``file:`` weights (default: none, for ImageNet and
            random-init weights).
        """
        return self.features.feature_spec(weights_source)

    @property
    def weights_label(self) -> str:
        """``imagenet``, ``random-init`` or ``file:NAME``."""
        return self.features.weights

    def name(self) -> str:
        """File-name-safe name with a hash of every field."""
        digest = hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:8]
        protocol = self.protocol
        return (
            f"p{self.phase}-{self.features.prefix}-{self.head}-{self.sampler}-{protocol.group_by}-"
            f"k{protocol.folds}-s{protocol.seed}{'' if self.head_seed is None else f'-h{self.head_seed}'}-{digest}"
        )

    def describe(self) -> str:
        """One line for people: backbone (weights) + head, sampler, protocol, subset."""
        return (
            f"{self.features.backbone} ({self.weights_label}) + {self.head}, sampler {self.sampler}, "
            f"{self.protocol.folds}-fold grouped by {self.protocol.group_by}, {self.subset}"
            + ("" if self.head_seed is None else f", head seed {self.head_seed}")
        )
