"""Argument groups shared by several commands, and option types that check their range where parsed.

An option whose value cannot be read (``--folds x``) is a usage error (exit 2, argparse's own
message); a value read but out of range (``--batch-size 0``) is bad input (exit 1), reported as
:class:`OptionError` before any work starts.
"""

from __future__ import annotations

import argparse
import math
import os
import re

from featx.backbones.registry import BACKBONES
from featx.backbones.weights import PRECISIONS
from featx.cli import errors
from featx.data.dataset import DATA_ENV, FETCHED_DATA, SUBSETS
from featx.data.images import DEFAULT_SIZE
from featx.evaluation.splits import PROTOCOLS
from featx.exceptions import FeatxError, ParameterError, UnknownNameError
from featx.features.engine import ENGINES
from featx.features.runtime import AUTO, RUNTIME_CHOICES
from featx.fileio import check_output_file, check_output_folder
from featx.heads.registry import HEADS, PAPER, get_head
from featx.heads.sampling import SAMPLERS
from featx.limits import DOMAINS, check_input_size

WHOLE_NUMBER = re.compile(r"\s*[+-]?[0-9][0-9_]*\s*")


class OptionError(FeatxError):
    """An option value that was read but is out of range."""


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Show each option's default (unless it has none or says it already), keep the examples' line breaks."""

    def _get_help_string(self, action):
        text = action.help or ""
        domain = getattr(action.type, "domain", None)
        if domain is not None:
            text += f" ({'each side ' if action.dest == 'input_size' else ''}{domain.text()})"
        if action.default in (None, False, argparse.SUPPRESS) or "default" in text or not action.option_strings:
            return text
        default = size_text(action.default) if action.dest == "input_size" else action.default
        if isinstance(default, (list, tuple)):
            default = " ".join(map(str, default))
        return f"{text} (default: {str(default).replace('%', '%%')})"


def bounded(flag: str):
    """The argparse type of the numeric option ``flag``: its domain is ``featx.limits.DOMAINS`` of its parameter.

    Text that is not a number of the domain's kind (``--folds x``, ``--folds 2.5``) is a usage
    error (exit 2); a number read but not finite or out of range (``--lr nan``, ``--seed -1``,
    ``--batch-size 1e9``) is an :class:`OptionError` (exit 1) naming the flag, the value and the range.
    """
    parameter = parameter_of(flag)
    domain = DOMAINS[parameter]

    def parse(text: str):
        try:
            return domain.check(parameter, read_number(text, domain.kind))
        except ParameterError as error:
            raise OptionError(f"{flag} {error.problem}, got {shown(text)}") from None

    parse.domain = domain
    return parse


def parameter_of(flag: str) -> str:
    """The library parameter of an option (``--lr``: ``learning_rate``), as :func:`featx.cli.errors.flag` names it."""
    return next(parameter for parameter in DOMAINS if errors.flag(parameter) == flag)


def read_number(text: str, kind: type):
    """``text`` as an ``int`` or ``float``; a whole number too long for Python to read is infinite.

    Raises
    ------
    argparse.ArgumentTypeError
        When ``text`` is not a number of that kind.
    """
    try:
        return kind(text)
    except ValueError:
        if WHOLE_NUMBER.fullmatch(text):  # beyond int()'s 4300 digits: certainly out of range
            return math.inf
        expected = "a whole number" if kind is int else "a number"
        raise argparse.ArgumentTypeError(f"expected {expected}, got {shown(text)}") from None


def shown(text: str) -> str:
    """``text`` for a message, cut to 40 characters."""
    return repr(text if len(text) <= 40 else text[:37] + "...")


def input_size(text: str) -> tuple[int, int]:
    """An argparse type: ``WIDTHxHEIGHT``, each side within the ``input_size`` domain of featx.limits."""
    parts = str(text).lower().split("x")
    if len(parts) != 2:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT such as 200x266, got {shown(text)}")
    try:
        sides = [read_number(part.strip(), int) for part in parts]
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT such as 200x266, got {shown(text)}") from None
    try:
        return check_input_size(sides)
    except ParameterError as error:
        raise OptionError(f"--input-size {error.problem}, got {shown(text)}") from None


input_size.domain = DOMAINS["input_size"]


def head_name(text: str) -> str:
    """An argparse type: a head name featx knows (``paper``, a registered head, ``mlpN-M`` with widths in range)."""
    try:
        return text if text == PAPER else get_head(text).name
    except ParameterError as error:
        raise OptionError(f"--head {error.problem}, got {shown(text)}") from None
    except UnknownNameError as error:
        raise OptionError(f"--head: {error}") from None


def size_text(size) -> str:
    """``WIDTHxHEIGHT``."""
    return f"{size[0]}x{size[1]}"


def add_data(parser, subsets: bool = True, writes_cache: bool = True) -> None:
    """``--data``, ``--subset``, ``--cache`` (checked as an output folder when the command ``writes_cache``,
    the default)."""
    group = parser.add_argument_group("data")
    group.add_argument(
        "--data",
        metavar="DIR",
        help=f"data folder: metadata.csv or one sub-folder per class "
        f"(default: ${DATA_ENV}, else {FETCHED_DATA}, where `featx data fetch` puts it)",
    )
    if subsets:
        group.add_argument(
            "--subset", default="all", choices=list(SUBSETS), help="the paper's Dataset_1 / Dataset_2, or every image"
        )
    group.add_argument(
        "--cache",
        default="cache",
        type=output_folder("--cache") if writes_cache else None,
        metavar="DIR",
        help="folder for feature stores, splits and results",
    )


def add_backbone(parser, required: bool = True) -> None:
    """``--model``, ``--weights``, ``--input-size``."""
    group = parser.add_argument_group("backbone")
    default = DEFAULT_SIZE if required else None
    group.add_argument(
        "--model",
        required=required,
        metavar="NAME",
        help=f"backbone: {', '.join(BACKBONES)}" + ("" if required else " (default: every extracted one)"),
    )
    group.add_argument(
        "--weights",
        default="imagenet" if required else None,
        metavar="imagenet|none|PATH",
        help="ImageNet weights, none (random-init, labelled so everywhere), or a Keras weights file",
    )
    group.add_argument(
        "--input-size",
        type=input_size,
        default=default,
        metavar="WxH",
        help=f"letterbox size (default {size_text(DEFAULT_SIZE)}, the paper's)",
    )


def add_protocol(parser) -> None:
    """``--folds``, ``--group-by``, ``--seed``."""
    group = parser.add_argument_group("cross-validation")
    group.add_argument("--folds", type=bounded("--folds"), default=10, help="number of folds")
    group.add_argument(
        "--group-by",
        default="patient",
        choices=list(PROTOCOLS),
        help="; ".join(f"{name}: {text}" for name, text in PROTOCOLS.items()),
    )
    group.add_argument("--seed", type=bounded("--seed"), default=0, help="seed of the folds and the heads")


def add_head(parser, samplers: bool = True, several: bool = False) -> None:
    """``--head`` and, for heads on cached features, ``--sampler``; ``several`` takes a list of each
    (candidates for ``featx select``: default the paper's head with every strategy)."""
    parser.add_argument(
        "--head",
        type=head_name,
        default=[PAPER] if several else PAPER,
        nargs="+" if several else None,
        metavar="NAME",
        help=f"{', '.join(HEADS)}, any mlpN-M, or {PAPER} (the paper's head for the backbone)"
        + ("; several: each is a candidate (default: paper)" if several else ""),
    )
    if samplers:
        parser.add_argument(
            "--sampler",
            default=list(SAMPLERS) if several else "none",
            nargs="+" if several else None,
            choices=list(SAMPLERS),
            help="; ".join(f"{spec.name}: {spec.summary}" for spec in SAMPLERS.values())
            + ("; several: each is a candidate with every head (default: all of them)" if several else ""),
        )


def add_jobs(parser) -> None:
    """``--jobs``: folds trained at once for heads that do not use every core themselves."""
    parser.add_argument(
        "--jobs",
        type=bounded("--jobs"),
        metavar="N",
        help="folds trained at once in worker processes for logreg and svm heads (default: one per "
        "core; heads that use every core themselves train one fold at a time)",
    )


def add_engine(parser) -> None:
    """``--engine``, ``--workers``, ``--address``, ``--gpus-per-worker``: what computes phase 1."""
    group = parser.add_argument_group("phase-1 engine")
    group.add_argument(
        "--engine",
        default="local",
        choices=list(ENGINES),
        help="; ".join(f"{name}: {spec.summary}" for name, spec in ENGINES.items()),
    )
    group.add_argument(
        "--workers",
        type=bounded("--workers"),
        metavar="N",
        help="local: decoding processes (0: threads; default: one per core); ray: backbone actors "
        "(default: one per GPU, else one)",
    )
    group.add_argument(
        "--address",
        metavar="auto|HOST:PORT",
        help="ray: the cluster to join (default: start one here with this machine's cores)",
    )
    group.add_argument(
        "--gpus-per-worker",
        type=bounded("--gpus-per-worker"),
        default=0.0,
        metavar="G",
        help="ray: GPUs each backbone actor asks for",
    )


PRECISION_NAMES = {"f32": "float32", "bf16": "mixed_bfloat16"}
"""Short names ``--precision`` accepts for the precisions of :data:`featx.backbones.weights.PRECISIONS`."""


def precision(text: str) -> str:
    """An argparse type: a precision, by its Keras dtype policy name or its short name (:data:`PRECISION_NAMES`)."""
    return PRECISION_NAMES.get(text, text)


def add_runtime(parser) -> None:
    """``--runtime`` and ``--precision``: what runs the backbone, in which arithmetic (both part of the store key)."""
    group = parser.add_argument_group("backbone runtime")
    group.add_argument(
        "--runtime",
        default=AUTO,
        choices=RUNTIME_CHOICES,
        help="auto: OpenVINO on a CPU where it is installed, Keras on a GPU; keras: Keras as before; openvino: "
        "the Keras model converted once (cached in FEATX_HOME) and run by OpenVINO on the CPU",
    )
    group.add_argument(
        "--precision",
        default=PRECISIONS[0],
        type=precision,
        choices=PRECISIONS,
        metavar="{f32,bf16}",
        help="arithmetic of the backbone: f32 (float32) or bf16 (mixed_bfloat16; on a CPU only with bfloat16 "
        "instructions, AVX512_BF16 or AMX)",
    )


def add_positive(parser) -> None:
    """``--positive``: the class sensitivity, specificity, 2-class accuracy, AUC and calibration are about."""
    parser.add_argument(
        "--positive",
        metavar="CLASS",
        help="the class the binary figures are about (default: covid "
        "when that label exists, else the least frequent class, with a note)",
    )


def add_forward_batch(parser) -> None:
    """``--batch-size``: images per forward pass through the backbone (default 32)."""
    parser.add_argument(
        "--batch-size", type=bounded("--batch-size"), default=32, help="images per forward pass (default: 32)"
    )


def add_pixel_cache(parser, again: str) -> None:
    """``--cache DIR``: keep letterboxed images in ``DIR/pixels`` so that ``again`` decodes nothing (default none)."""
    parser.add_argument(
        "--cache",
        type=output_folder("--cache"),
        metavar="DIR",
        help=f"keep the letterboxed images in DIR/pixels, so that {again} decodes nothing (default: none)",
    )


def add_training(parser, defaults: dict) -> None:
    """``--epochs``, ``--batch-size``, ``--lr`` with the given defaults (None: the head's own)."""
    parser.add_argument(
        "--epochs",
        type=bounded("--epochs"),
        default=defaults["epochs"],
        help="training epochs (dense heads and fine-tuning; default: 10)",
    )
    parser.add_argument(
        "--batch-size",
        type=bounded("--batch-size"),
        default=defaults["batch_size"],
        help="training batch size (dense heads and fine-tuning; default: 64)",
    )
    parser.add_argument(
        "--lr",
        type=bounded("--lr"),
        default=defaults["lr"],
        help="Adam learning rate (default: 1e-3 for heads, 1e-4 for fine-tuning)",
    )


def common_parser() -> argparse.ArgumentParser:
    """``-v``, ``-q`` and ``--json``, shared by every command."""
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("output")
    group.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=None,
        help="more detail (-v: debug messages and TensorFlow's own log)",
    )
    group.add_argument("-q", "--quiet", action="store_true", help="warnings and results only, no progress bars")
    group.add_argument(
        "--json", action="store_true", help="print one JSON object on stdout (everything else goes to stderr)"
    )
    return common


def new_command(subparsers, common, name: str, summary: str, examples) -> argparse.ArgumentParser:
    """A subcommand with its one-line summary, shared options, and examples after the options."""
    return subparsers.add_parser(
        name,
        parents=[common],
        help=summary.replace("%", "%%"),
        description=summary,
        formatter_class=HelpFormatter,
        epilog="examples:\n" + "\n".join(f"  {line}" for line in examples),
    )


def output_file(flag: str):
    """An argparse type: a file the command will write, checked before any work starts.

    A folder in its place, a part of its path that is a file, a read-only folder or a name too long
    is a :class:`~featx.exceptions.FileSystemError` naming ``flag`` (exit 1; see
    :func:`featx.fileio.check_output_file`). Returns the path as text, ``~`` expanded.
    """

    def parse(text: str) -> str:
        return str(check_output_file(text, flag))

    parse.output_flag = flag
    return parse


def output_folder(flag: str):
    """An argparse type: a folder the command will write in, checked before any work starts.

    A file in its place, a read-only file system or a name too long is a
    :class:`~featx.exceptions.FileSystemError` naming ``flag`` (exit 1; see
    :func:`featx.fileio.check_output_folder`). Returns the path as text, ``~`` expanded.
    """

    def parse(text: str) -> str:
        return str(check_output_folder(text, flag))

    parse.output_flag = flag
    return parse


INPUTS = {
    "data": "--data",
    "inputs": "an input",
    "model_dir": "--model-dir",
    "external": "--external",
    "source": "--from",
}
"""Options (by ``dest``) whose paths a command reads; ``--model-dir`` is an output where its type says
so (``train``), an input elsewhere (``predict``, ``validate``)."""


def check_apart(parser: argparse.ArgumentParser, args) -> None:
    """Refuse, before any work, an output that is one of the command's inputs, lies inside one, or
    holds one: featx never writes into what it reads (``predict --out`` on its own model's manifest
    or on an input image, a ``--cache`` inside a class-folder data set, ``--explain`` into the
    folder of the images it explains).

    Parameters
    ----------
    parser : argparse.ArgumentParser
        The command's own parser (its options' types say which are outputs).
    args : argparse.Namespace

    Raises
    ------
    OptionError
        Naming both options and paths.
    """
    outputs, inputs = [], []
    for action in parser._actions:
        values = getattr(args, action.dest, None)
        if hasattr(action.type, "output_flag"):
            found, flag = outputs, action.type.output_flag
        elif action.dest in INPUTS:
            found, flag = inputs, INPUTS[action.dest]
        else:
            continue
        for value in values if isinstance(values, list) else [] if values is None else [values]:
            found.append((flag, os.path.realpath(os.fsdecode(value))))
    for out_flag, output in outputs:
        for in_flag, source in inputs:
            if output == source or _inside(output, source) or _inside(source, output):
                raise OptionError(
                    f"{out_flag} {output} overlaps {in_flag} {source}: featx never writes into what it reads; "
                    f"choose another {out_flag}"
                )


def _inside(path: str, folder: str) -> bool:
    return os.path.commonpath([path, folder]) == folder and path != folder
