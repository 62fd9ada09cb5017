"""k nearest neighbours on standardised features: a head added as this one file and one registry line."""

from __future__ import annotations

from featx.heads.classical import ClassicalFamily, SkopsFile, Standardized
from featx.heads.family import HeadSpec

NEIGHBOURS = 5


class StandardizedNeighbours(Standardized):
    """:class:`~featx.heads.classical.Standardized` around a k-NN, whose fit takes no sample weights (every
    neighbour's vote counts the same), so the ``class-weight`` strategy is refused for it."""

    def fit(self, X, y):
        """Standardise ``X`` and fit a clone of ``estimator``."""
        return super().fit(X, y)


def nearest_neighbours(random_state: int = 0) -> StandardizedNeighbours:
    """The :data:`NEIGHBOURS` nearest training rows by Euclidean distance vote, on standardised features.

    Deterministic, so ``random_state`` (default 0) is not used; every distance is computed (``brute``),
    which for a few thousand rows of ~1,000 features is faster than a tree and saves no tree.
    """
    from sklearn.neighbors import KNeighborsClassifier

    return StandardizedNeighbours(KNeighborsClassifier(n_neighbors=NEIGHBOURS, algorithm="brute"))


HEAD = HeadSpec(
    name="knn",
    summary=f"{NEIGHBOURS} nearest neighbours on standardised features",
    family=ClassicalFamily(
        build=nearest_neighbours,
        file=SkopsFile(trusted=frozenset({"featx.heads.knn.StandardizedNeighbours"})),
        explanation="occlusion",
    ),
)
