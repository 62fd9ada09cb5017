"""``featx reproduce``: the paper's experiment under both protocols, the audit, and a report."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from featx.cli import inputs
from featx.cli.options import add_data, add_engine, bounded, input_size, new_command, output_folder
from featx.cli.output import emit
from featx.data.images import DEFAULT_SIZE


def register(subparsers, common) -> None:
    from featx.backbones.registry import BACKBONES
    from featx.data.dataset import PAPER_SUBSETS, SUBSETS
    from featx.heads.sampling import SAMPLERS
    from featx.study.reproduce import DEFAULT_FALLBACK, DEFAULT_MODELS, DEFAULT_REPEATS, DEFAULT_STRATEGIES, FALLBACKS

    parser = new_command(
        subparsers,
        common,
        "reproduce",
        "the paper's experiment under its image-level protocol "
        "and patient-grouped folds, the confound audit, and a report",
        [
            "featx reproduce --data data/cxr --models efficientnet_lite0 efficientnet_lite1",
            "featx reproduce --models efficientnet_lite0 --subsets dataset2 --no-audit --json",
        ],
    )
    add_data(parser, subsets=False)
    add_engine(parser)
    parser.add_argument(
        "--models",
        nargs="+",
        default=list(DEFAULT_MODELS),
        metavar="NAME",
        help=f"backbones ({', '.join(BACKBONES)})",
    )
    parser.add_argument("--phase", type=int, choices=[2, 3], default=2, help="2: frozen backbone; 3: fine-tuned")
    parser.add_argument(
        "--subsets", nargs="+", default=list(PAPER_SUBSETS), choices=list(SUBSETS), help="the paper's datasets"
    )
    parser.add_argument("--input-size", type=input_size, default=DEFAULT_SIZE, metavar="WxH", help="letterbox size")
    parser.add_argument("--folds", type=bounded("--folds"), default=10)
    parser.add_argument("--seed", type=bounded("--seed"), default=0)
    parser.add_argument("--epochs", type=bounded("--epochs"), default=10, help="phase 3 epochs")
    parser.add_argument(
        "--fallback",
        default=DEFAULT_FALLBACK,
        choices=list(FALLBACKS),
        help="; ".join(f"{name}: {text}" for name, text in FALLBACKS.items())
        + " (when ImageNet weights are unavailable)",
    )
    parser.add_argument(
        "--strategies",
        nargs="*",
        choices=list(SAMPLERS),
        metavar="NAME",
        default=list(DEFAULT_STRATEGIES),
        help="phase 2: also fit the first backbone's paper head under these imbalance strategies on the "
        "patient-grouped folds, and report which differ from none (paired differences, a forest plot); without "
        "names, or by default, all of "
        f"{', '.join(SAMPLERS)}; --strategies none fits the paper's head alone",
    )
    parser.add_argument(
        "--repeats",
        type=bounded("--repeats"),
        default=DEFAULT_REPEATS,
        help="phase 2: fit the first backbone's paper head on the last subset over this many split sets (its head's "
        "seed fixed) and under this many head seeds (its split fixed), so that the report sets the spread due to "
        "the split beside the spread due to the head's seed; 1 leaves it out",
    )
    parser.add_argument("--no-audit", action="store_true", help="skip the confound audit")
    parser.add_argument(
        "--external",
        metavar="DIR",
        help="an external labelled folder: train each phase-2 variant "
        "on all its data and validate it there (a section per variant in the report)",
    )
    parser.add_argument(
        "--out", default="reports/paper", type=output_folder("--out"), metavar="DIR", help="report folder"
    )
    parser.set_defaults(run=run)


def run(args) -> int:
    from featx import __version__
    from featx.evaluation.splits import Protocol
    from featx.fileio import written_together
    from featx.heads.sampling import SAMPLERS
    from featx.study.audit import missing_patients_note, run_audit
    from featx.study.paper_report import paper_report, reproduction_title, summary_lines
    from featx.study.reproduce import reproduce

    data = inputs.data_folder(args)
    engine = inputs.engine(args)
    reproduction = reproduce(
        data,
        args.models,
        phase=args.phase,
        input_size=args.input_size,
        folds=args.folds,
        seed=args.seed,
        epochs=args.epochs,
        subsets=args.subsets,
        fallback=args.fallback,
        cache_dir=args.cache,
        engine=engine,
        progress=inputs.progress(args),
        strategies=tuple(args.strategies or SAMPLERS),
        repeats=args.repeats,
    )
    audit = None
    if not args.no_audit and reproduction.runs:
        whole = inputs.dataset(args, "all")
        if whole.has_patient_ids:
            audit = run_audit(
                whole,
                reproduction.runs[0].features,
                Protocol(group_by="patient", folds=args.folds, seed=args.seed),
                cache_dir=args.cache,
                engine=engine,
                progress=inputs.progress(args),
            )
        else:
            left_out = f"The confound audit was left out: {missing_patients_note(whole)}."
            reproduction = replace(reproduction, notes=(*reproduction.notes, left_out))
    external = []
    if args.external:
        from featx.data.dataset import load_dataset
        from featx.study.reproduce import validate_externally

        external = validate_externally(
            reproduction,
            load_dataset(args.external, min_classes=1),
            models_dir=Path(args.out) / "models",
            cache_dir=args.cache,
            progress=inputs.progress(args),
        )
    out = Path(args.out)
    with written_together(out) as staging:  # report.md, report.html and their figures, or none of them
        paper_report(reproduction, audit, staging, __version__, external)
    markdown, html = out / "report.md", out / "report.html"
    lines = [reproduction_title(), *summary_lines(reproduction, audit)]
    payload = {
        "report_md": str(markdown),
        "report_html": str(html),
        "runs": [{"subset": run.subset, **run.summary.to_json()} for run in reproduction.runs],
        "skipped": reproduction.skipped,
        "notes": list(reproduction.notes),
        "audit": None if audit is None else audit.to_json(),
        "external": [
            {"subset": run.subset, "variant": run.summary.result.variant.to_dict(), **v.to_json()}
            for run, v in external
        ],
    }
    emit(args, payload, lines + [f"report: {markdown} and {html}"])
    return 0
