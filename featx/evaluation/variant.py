"""A variant: everything that defines one set of out-of-fold predictions.

Phase 2 (a head on cached features) and phase 3 (fine-tuning) both describe their runs with
a :class:`Variant`; its file name carries a hash of every field, so two runs share a stored
result exactly when they are the same experiment.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, fields
from typing import Annotated, Literal

from pydantic import Field

from featx.evaluation.splits import PROTOCOLS, Protocol
from featx.features.identity import StoreKey
from featx.limits import MAX_SEED
from featx.records import Text


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


@dataclass(frozen=True)
class Variant:
    """One experiment: features, head, imbalance strategy, protocol, dataset.

    Attributes
    ----------
    phase : int
        2 (frozen backbone, cached features) or 3 (fine-tuned).
    features : StoreKey
        Backbone, weights, preprocessing and input size; ``dataset_id`` is the evaluated dataset.
    head : str
        A head name (never ``paper``: that is resolved before).
    head_params : dict
        Settings that differ from the head's defaults (phase 3: every fine-tuning setting).
    sampler : str
    protocol : Protocol
    subset : str
        The subset of the data folder the dataset was drawn as.
    head_seed : int, optional
        The seed of the head's own randomness (its initialisation, the sampler) where it differs
        from the folds' (default None: the protocol's seed seeds both). Training the same variant
        under two head seeds on the same folds shows the spread due to the head alone.
    """

    phase: int
    features: StoreKey
    head: str
    head_params: dict = field(default_factory=dict)
    sampler: str = "none"
    protocol: Protocol = Protocol()
    subset: str = "all"
    head_seed: int | None = None

    @property
    def seed_of_head(self) -> int:
        """The seed the head (and sampler) is trained with: ``head_seed``, else the protocol's seed."""
        return self.protocol.seed if self.head_seed is None else self.head_seed

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
            "head": self.head,
            "head_params": dict(self.head_params),
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
            head=recipe.head,
            head_params=recipe.params(),
            sampler=recipe.sampler,
            protocol=protocol,
            subset=dataset.subset,
            head_seed=head_seed,
        )

    def to_record(self) -> VariantRecord:
        """The record of :meth:`to_dict`'s form."""
        return VariantRecord(**{**self.to_dict(), "input_size": self.features.input_size})

    @classmethod
    def from_record(cls, record: VariantRecord) -> Variant:
        """The variant a record read from a file describes."""
        return cls(
            phase=record.phase,
            features=StoreKey(**{key.name: getattr(record, key.name) for key in fields(StoreKey)}),
            head=record.head,
            head_params=dict(record.head_params),
            sampler=record.sampler,
            protocol=Protocol(record.protocol, record.folds, record.seed),
            subset=record.subset,
            head_seed=record.head_seed,
        )

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
