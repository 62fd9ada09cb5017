"""``featx models``: the registered backbones, and whether their ImageNet weights can be had here."""

from __future__ import annotations

from featx.cli.options import new_command
from featx.cli.output import emit


def register(subparsers, common) -> None:
    parser = new_command(
        subparsers,
        common,
        "models",
        "list the registered backbones and their ImageNet weights",
        ["featx models", "featx models --json"],
    )
    parser.set_defaults(run=run)


def run(args) -> int:
    from featx.backbones.registry import BACKBONES
    from featx.backbones.weights import imagenet_availability

    entries = []
    for spec in BACKBONES.values():
        available, source = imagenet_availability(spec)
        entries.append(
            {
                "name": spec.name,
                "feature_dim": spec.feature_dim,
                "preprocessing": spec.preprocessing,
                "cutoff": spec.cutoff if spec.cutoff is not None else "last 2 blocks + head trainable",
                "paper_head": spec.paper_head,
                "min_size": spec.min_size,
                "imagenet_available": available,
                "imagenet_source": source,
            }
        )
    lines = [
        f"{e['name']:20s} features {e['feature_dim']:5d}  {e['preprocessing']:5s}  paper head "
        f"{e['paper_head']:12s} ImageNet weights: {'yes' if e['imagenet_available'] else 'no'} "
        f"({e['imagenet_source']})"
        for e in entries
    ]
    emit(args, {"backbones": entries}, lines)
    return 0
