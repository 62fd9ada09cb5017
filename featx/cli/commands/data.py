"""``featx data fetch``: assemble a data folder from the paper's public sources."""

from __future__ import annotations

from featx.cli.options import HelpFormatter, new_command, output_folder
from featx.cli.output import emit
from featx.data.dataset import FETCHED_DATA


def register(subparsers, common) -> None:
    data = subparsers.add_parser(
        "data", help="dataset tools", description="dataset tools", formatter_class=HelpFormatter
    )
    commands = data.add_subparsers(dest="data_command", required=True, metavar="COMMAND")
    fetch = new_command(
        commands,
        common,
        "fetch",
        "assemble a data folder from Cohen's covid-chestxray-dataset and "
        "Kermany's pediatric set (resumable, checksum-verified; never overwrites)",
        [
            f"featx data fetch --dest {FETCHED_DATA}",
            "featx data fetch --dest data/cxr --from https://mirror.example/featx/",
        ],
    )
    fetch.add_argument(
        "--dest", default=FETCHED_DATA, type=output_folder("--dest"), metavar="DIR", help="folder to create"
    )
    fetch.add_argument(
        "--from",
        dest="source",
        metavar="DIR_OR_URL",
        help="a mirror URL or folder with the archives (and SHA256SUMS), or a featx data folder",
    )
    fetch.set_defaults(run=run)


def run(args) -> int:
    from featx.data.fetch import fetch

    summary = fetch(args.dest, args.source, progress=not args.quiet)
    counts = ", ".join(f"{label} {count}" for label, count in summary["labels"].items())
    emit(args, summary, [f"{summary['dest']}: {summary['images']} images ({counts})"])
    return 0
