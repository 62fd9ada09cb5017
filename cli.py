#!/usr/bin/env python
"""featx command line: parse arguments, call one featx function, print the result.

Every command exits 0 on success and 1 with a one-line message on a featx error.
"""

from __future__ import annotations

import argparse
import json
import sys

from featx.exceptions import FeatxError

DEFAULT_DATA = "../shared/data/cxr"
DEFAULT_CACHE = "cache"


def _add_data_options(parser):
    parser.add_argument("--data", default=DEFAULT_DATA, help="data folder (metadata.csv or class sub-folders)")
    parser.add_argument("--subset", default="all", choices=["all", "dataset1", "dataset2"],
                        help="the paper's Dataset_1/Dataset_2 or all images")
    parser.add_argument("--cache", default=DEFAULT_CACHE, help="folder for feature stores, splits and results")


def _add_backbone_options(parser):
    parser.add_argument("--model", required=True, help="backbone name (see `cli.py models`)")
    parser.add_argument("--weights", default="imagenet", help="imagenet | none (random-init) | PATH to a weights file")
    parser.add_argument("--input-size", default="200x266", help="letterbox size WIDTHxHEIGHT (default 200x266)")


def _finite_or_none(value):
    """JSON has no NaN: undefined numbers (a PPV with no positive call, say) become null."""
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, dict):
        return {key: _finite_or_none(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_none(item) for item in value]
    return value


def _print_result(result: dict, as_json: bool, lines) -> None:
    for line in lines:
        print(line)
    if as_json:
        print(json.dumps(_finite_or_none(result), default=str, allow_nan=False))


def _dataset(args):
    """Load and validate ``--data``/``--subset``, and say what was loaded on stderr."""
    from featx.data.dataset import load_dataset

    dataset = load_dataset(args.data, args.subset)
    print(dataset.describe(), file=sys.stderr)
    return dataset


def cmd_models(args) -> int:
    from featx.backbones.registry import BACKBONES

    for spec in BACKBONES.values():
        cutoff = spec.cutoff if spec.cutoff is not None else "last 2 blocks + head trainable"
        print(f"{spec.name:22s} features {spec.feature_dim:5d}  preprocessing {spec.preprocessing:6s} "
              f"cutoff {cutoff}  paper head {spec.paper_head}")
    return 0


def cmd_extract(args) -> int:
    from featx.features.extract import extract
    from featx.data.images import parse_size

    size = parse_size(args.input_size)
    dataset = _dataset(args)
    summary = extract(dataset, args.model, args.weights, size, args.batch_size, args.cache,
                      strict=args.strict, rebuild=args.rebuild, progress=not args.quiet)
    lines = [summary["store"]]
    for skipped in summary["skipped_files"]:
        lines.append(f"skipped {skipped['image_id']}: {skipped['reason']}")
    state = "already complete, no CNN work" if summary["cached"] else f"{summary['images_per_s']:.1f} images/s"
    lines.append(f"{summary['images']} images, {summary['skipped']} skipped, {state} "
                 f"({summary['backbone']}, weights {summary['weights']})")
    _print_result(summary, args.json, lines)
    return 0


def _add_protocol_options(parser):
    parser.add_argument("--folds", type=int, default=10)
    parser.add_argument("--group-by", default="patient", choices=["patient", "image"],
                        help="patient: no patient in two folds (default); image: the paper's protocol")
    parser.add_argument("--seed", type=int, default=0)


def _metrics_lines(summary: dict) -> list[str]:
    ci = summary["ci95"]
    parts = []
    for key, label in (("accuracy_3class", "3-class acc"), ("accuracy_2class", "2-class acc"),
                       ("sensitivity", "covid sens"), ("specificity", "covid spec")):
        parts.append(f"{label} {summary[key] * 100:.2f}% [{ci[key][0] * 100:.1f}, {ci[key][1] * 100:.1f}]")
    variant = summary["variant"]
    timing = "reused stored result" if summary["reused"] else f"fit in {summary['fit_seconds']:.1f}s"
    return [
        f"{variant['backbone']} ({variant['weights']}) + {variant['head']}, sampler {variant['sampler']}, "
        f"{variant['folds']}-fold grouped by {variant['protocol']}, {variant['subset']} "
        f"({timing})",
        "; ".join(parts) + f"; AUC covid {summary['auc_covid']:.3f}",
        f"result: {summary['result_file']}",
    ]


def cmd_fit(args) -> int:
    from featx.evaluation.crossval import fit_variant
    from featx.data.images import parse_size

    dataset = _dataset(args)
    summary = fit_variant(
        dataset, args.model, args.head, args.sampler, args.weights, parse_size(args.input_size), args.group_by,
        args.folds, args.seed, args.cache, args.epochs, args.batch_size, args.lr, refit=args.refit,
        progress=not args.quiet,
    )
    _print_result(summary, args.json, _metrics_lines(summary))
    return 0


def cmd_finetune(args) -> int:
    from featx.evaluation.finetune import finetune_variant
    from featx.data.images import parse_size

    dataset = _dataset(args)
    summary = finetune_variant(
        dataset, args.model, args.head, args.cutoff, args.weights, parse_size(args.input_size), args.group_by,
        args.folds, args.seed, args.epochs, args.batch_size, args.lr, args.precision, args.warm_start, args.cache,
        refit=args.refit, progress=not args.quiet,
    )
    _print_result(summary, args.json, _metrics_lines(summary))
    return 0


def cmd_train(args) -> int:
    from featx.models.train import train_model
    from featx.data.images import parse_size

    dataset = _dataset(args)
    manifest = train_model(
        dataset, args.model, args.head, args.model_dir, args.weights, parse_size(args.input_size), args.sampler,
        args.finetune, args.epochs, args.batch_size, args.lr, args.group_by, args.folds, args.seed, args.cache,
        progress=not args.quiet,
    )
    cv = manifest["cross_validation"]
    lines = [f"model saved to {args.model_dir} ({manifest['backbone']}, weights {manifest['weights']}, "
             f"head {manifest['head']}{', fine-tuned' if manifest['finetuned'] else ''})"]
    if "accuracy_3class" in cv:
        lines.append(f"chosen by {cv['protocol']}-grouped CV: 3-class acc {cv['accuracy_3class'] * 100:.2f}%, "
                     f"covid sens {cv['sensitivity'] * 100:.2f}%, spec {cv['specificity'] * 100:.2f}%")
    else:
        lines.append(cv["note"])
    _print_result(manifest, args.json, lines)
    return 0


def cmd_predict(args) -> int:
    from featx.models.train import predict_files

    table = predict_files(args.model_dir, args.inputs, args.out, args.explain)
    if args.out is None:
        print(table.to_csv(index=False), end="")
    else:
        print(f"{len(table)} rows written to {args.out}")
    failed = table[table["error"] != ""]
    for row in failed.itertuples():
        print(f"could not predict {row.file}: {row.error}", file=sys.stderr)
    return 0


def cmd_reproduce(args) -> int:
    from featx import __version__
    from featx.study.audit import run_audit
    from featx.data.dataset import load_dataset
    from featx.data.images import parse_size
    from featx.study.compare import paper_report
    from featx.study.reproduce import reproduce

    size = parse_size(args.input_size)
    reproduced = reproduce(args.data, args.models, args.phase, size, args.folds, args.seed, args.cache, args.fallback,
                           args.epochs, progress=not args.quiet, subsets=args.subsets)
    audit = None
    if not args.no_audit and reproduced["runs"]:
        audit_model = reproduced["runs"][0]["variant"]
        audit = run_audit(load_dataset(args.data, "all"), audit_model["backbone"],
                          "none" if audit_model["weights"] == "random-init" else "imagenet", size, args.folds,
                          args.seed, args.cache, progress=not args.quiet)
    markdown, html = paper_report(reproduced, audit, args.out, __version__)
    lines = [line for line in markdown.read_text().split("## Method")[0].splitlines() if line.strip()]
    _print_result({"report_md": str(markdown), "report_html": str(html), "runs": len(reproduced["runs"]),
                   "skipped": reproduced["skipped"]}, args.json, lines + [f"report: {markdown} and {html}"])
    return 0


def cmd_audit(args) -> int:
    from featx.study.audit import run_audit
    from featx.data.dataset import load_dataset
    from featx.data.images import parse_size
    from featx.study.compare import audit_summary

    dataset = load_dataset(args.data, args.subset)
    audit = run_audit(dataset, args.model, args.weights, parse_size(args.input_size), args.folds, args.seed,
                      args.cache, progress=not args.quiet)
    _print_result(audit, args.json, audit_summary(audit))
    return 0


def cmd_data_fetch(args) -> int:
    from featx.data.fetch import fetch

    summary = fetch(args.dest, args.source, progress=not args.quiet)
    counts = ", ".join(f"{label} {count}" for label, count in summary["labels"].items())
    _print_result(summary, args.json, [f"{summary['dest']}: {summary['images']} images ({counts})"])
    return 0


def cmd_compare(args) -> int:
    from featx.data.dataset import load_dataset
    from featx.study.compare import compare_rows, markdown_table, write_csv

    dataset = load_dataset(args.data, args.subset)
    rows = compare_rows(args.cache, dataset.id)
    if not rows:
        print(f"No stored results for {dataset.describe()}; run `cli.py fit` first.", file=sys.stderr)
        return 1
    path = write_csv(rows, args.csv or f"{args.cache}/{dataset.id}/compare.csv")
    print(f"{dataset.describe()}; 95% bootstrap intervals (patients resampled under the patient protocol)")
    print(markdown_table(rows))
    print(f"CSV: {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cli.py", description="featx: transfer learning on chest X-rays")
    commands = parser.add_subparsers(dest="command", required=True)

    models = commands.add_parser("models", help="list the registered backbones")
    models.set_defaults(func=cmd_models)

    extract = commands.add_parser("extract", help="phase 1: cache a backbone's pooled features in HDF5")
    _add_backbone_options(extract)
    _add_data_options(extract)
    extract.add_argument("--batch-size", type=int, default=32)
    extract.add_argument("--strict", action="store_true", help="stop before writing if any image cannot be decoded")
    extract.add_argument("--rebuild", action="store_true", help="discard an existing or damaged store first")
    extract.add_argument("--quiet", action="store_true", help="no progress bar")
    extract.add_argument("--json", action="store_true", help="print the summary as JSON on the last line")
    extract.set_defaults(func=cmd_extract)

    fit = commands.add_parser("fit", help="phase 2: train a head on cached features over saved folds")
    _add_backbone_options(fit)
    _add_data_options(fit)
    _add_protocol_options(fit)
    fit.add_argument("--head", default="paper", help="softmax, mlp1024, mlp1000, mlp1000-750, logreg, svm, xgb, rf, "
                                                      "or paper (the paper's head for the backbone)")
    fit.add_argument("--sampler", default="none", choices=["none", "class-weight", "oversample", "undersample", "smote"])
    fit.add_argument("--epochs", type=int, help="Keras heads: epochs (default 10)")
    fit.add_argument("--batch-size", type=int, help="Keras heads: batch size (default 64)")
    fit.add_argument("--lr", type=float, help="Keras heads: Adam learning rate (default 1e-3)")
    fit.add_argument("--refit", action="store_true", help="train again even if this variant's result exists")
    fit.add_argument("--quiet", action="store_true")
    fit.add_argument("--json", action="store_true", help="print the summary as JSON on the last line")
    fit.set_defaults(func=cmd_fit)

    finetune = commands.add_parser("finetune", help="phase 3: train the layers past the cutoff end to end per fold")
    _add_backbone_options(finetune)
    _add_data_options(finetune)
    _add_protocol_options(finetune)
    finetune.add_argument("--head", default="paper", help="Keras head: softmax or mlpN-M, or paper")
    finetune.add_argument("--cutoff", type=int, help="first trainable layer (default: the paper's cutoff)")
    finetune.add_argument("--epochs", type=int, default=10)
    finetune.add_argument("--batch-size", type=int, default=64)
    finetune.add_argument("--lr", type=float, default=1e-4, help="Adam learning rate (default 1e-4)")
    finetune.add_argument("--precision", default="float32", choices=["float32", "mixed_bfloat16"])
    finetune.add_argument("--warm-start", action="store_true",
                          help="initialise the head from the phase-2 head trained on cached features")
    finetune.add_argument("--refit", action="store_true", help="train again even if this variant's result exists")
    finetune.add_argument("--quiet", action="store_true")
    finetune.add_argument("--json", action="store_true", help="print the summary as JSON on the last line")
    finetune.set_defaults(func=cmd_finetune)

    train = commands.add_parser("train", help="train a final model on all the data and save it to a folder")
    _add_backbone_options(train)
    _add_data_options(train)
    _add_protocol_options(train)
    train.add_argument("--head", default="paper")
    train.add_argument("--sampler", default="none", choices=["none", "class-weight", "oversample", "undersample", "smote"])
    train.add_argument("--model-dir", required=True, help="folder to save the model in")
    train.add_argument("--finetune", action="store_true", help="fine-tune past the cutoff instead of a frozen backbone")
    train.add_argument("--epochs", type=int, default=10)
    train.add_argument("--batch-size", type=int, default=64)
    train.add_argument("--lr", type=float)
    train.add_argument("--quiet", action="store_true")
    train.add_argument("--json", action="store_true")
    train.set_defaults(func=cmd_train)

    predict = commands.add_parser("predict", help="predict radiographs with a saved model")
    predict.add_argument("--model-dir", required=True)
    predict.add_argument("inputs", nargs="+", metavar="IMAGE_OR_FOLDER")
    predict.add_argument("--out", help="CSV file (default: print to stdout)")
    predict.add_argument("--explain", metavar="OUTDIR", help="write Grad-CAM overlays (Keras heads)")
    predict.set_defaults(func=cmd_predict)

    reproduce = commands.add_parser("reproduce", help="the paper's experiment under both protocols, with a report")
    reproduce.add_argument("--data", default=DEFAULT_DATA)
    reproduce.add_argument("--cache", default=DEFAULT_CACHE)
    reproduce.add_argument("--models", nargs="+", default=["efficientnet_lite0", "mobilenet_v2"])
    reproduce.add_argument("--phase", type=int, choices=[2, 3], default=2)
    reproduce.add_argument("--subsets", nargs="+", default=["dataset1", "dataset2"],
                           choices=["dataset1", "dataset2", "all"], help="the paper's datasets (default both)")
    reproduce.add_argument("--input-size", default="200x266")
    reproduce.add_argument("--folds", type=int, default=10)
    reproduce.add_argument("--seed", type=int, default=0)
    reproduce.add_argument("--epochs", type=int, default=10, help="phase 3 epochs")
    reproduce.add_argument("--fallback", default="random-init", choices=["random-init", "skip"],
                           help="when ImageNet weights are unavailable: run random-init (labelled) or skip")
    reproduce.add_argument("--no-audit", action="store_true")
    reproduce.add_argument("--out", default="reports/paper")
    reproduce.add_argument("--quiet", action="store_true")
    reproduce.add_argument("--json", action="store_true")
    reproduce.set_defaults(func=cmd_reproduce)

    audit = commands.add_parser("audit", help="confound audit: source probe, lungs masked, site hold-out, adults")
    _add_backbone_options(audit)
    _add_data_options(audit)
    audit.add_argument("--folds", type=int, default=10)
    audit.add_argument("--seed", type=int, default=0)
    audit.add_argument("--quiet", action="store_true")
    audit.add_argument("--json", action="store_true")
    audit.set_defaults(func=cmd_audit)

    data = commands.add_parser("data", help="dataset tools")
    data_commands = data.add_subparsers(dest="data_command", required=True)
    fetch = data_commands.add_parser("fetch", help="assemble a data folder from the paper's public sources")
    fetch.add_argument("--dest", default="data/cxr")
    fetch.add_argument("--from", dest="source", metavar="DIR_OR_URL",
                       help="a mirror URL or folder with the archives (and SHA256SUMS), or a featx data folder")
    fetch.add_argument("--quiet", action="store_true")
    fetch.add_argument("--json", action="store_true")
    fetch.set_defaults(func=cmd_data_fetch)

    compare = commands.add_parser("compare", help="side-by-side table of every stored variant of a dataset")
    _add_data_options(compare)
    compare.add_argument("--csv", help="CSV file to write (default: cache/<dataset id>/compare.csv)")
    compare.set_defaults(func=cmd_compare)
    return parser


def main(argv=None) -> int:
    """Run one command; return the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except FeatxError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; a rerun resumes from the last finished batch", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
