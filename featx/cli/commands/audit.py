"""``featx audit``: does the model see disease, or the source and age of the image?"""

from __future__ import annotations

from featx.cli import inputs
from featx.cli.options import add_backbone, add_data, add_engine, add_positive, bounded, new_command
from featx.cli.output import emit


def register(subparsers, common) -> None:
    parser = new_command(
        subparsers,
        common,
        "audit",
        "confound audit: source probe, lungs masked, leave-one-site-out, adults called covid",
        [
            "featx audit --model efficientnet_lite0 --data data/cxr",
            "featx audit --model efficientnet_lite0 --json > audit.json",
        ],
    )
    add_backbone(parser)
    add_data(parser)
    add_engine(parser)
    add_positive(parser)
    parser.add_argument("--folds", type=bounded("--folds"), default=10)
    parser.add_argument("--seed", type=bounded("--seed"), default=0)
    parser.set_defaults(run=run)


def run(args) -> int:
    from featx.evaluation.splits import Protocol
    from featx.study.audit import run_audit
    from featx.study.audit_report import audit_summary

    audit = run_audit(
        inputs.dataset(args),
        inputs.features(args),
        Protocol(group_by="patient", folds=args.folds, seed=args.seed),
        cache_dir=args.cache,
        positive=args.positive,
        engine=inputs.engine(args),
        progress=inputs.progress(args),
    )
    emit(args, audit.to_json(), audit_summary(audit))
    return 0
