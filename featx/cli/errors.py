"""featx's errors as the command line says them: parameters become ``--flags``, and a missing
feature store comes with the command that makes it."""

from __future__ import annotations

from featx.exceptions import FeatxError, MissingFeaturesError, ParameterError, WeightsError

FLAGS = {"backbone": "--model", "learning_rate": "--lr", "features": "--model"}


def flag(parameter: str) -> str:
    """The command-line option of a library parameter."""
    return FLAGS.get(parameter, "--" + parameter.replace("_", "-"))


def extract_command(args) -> str:
    """The ``featx extract`` line that makes the store the command needs."""
    from featx.cli.options import size_text
    from featx.data.images import DEFAULT_SIZE

    parts = ["featx extract", f"--model {getattr(args, 'model', None) or 'efficientnet_lite0'}"]
    if getattr(args, "weights", None) not in (None, "imagenet"):
        parts.append(f"--weights {args.weights}")
    size = getattr(args, "input_size", None) or DEFAULT_SIZE
    if size != DEFAULT_SIZE:
        parts.append(f"--input-size {size_text(size)}")
    if getattr(args, "data", None):
        parts.append(f"--data {args.data}")
    if getattr(args, "subset", "all") != "all":
        parts.append(f"--subset {args.subset}")
    if getattr(args, "cache", "cache") != "cache":
        parts.append(f"--cache {args.cache}")
    return " ".join(parts)


def describe(error: FeatxError, args) -> str:
    """The message for ``error`` on the command line."""
    if isinstance(error, ParameterError):
        return f"{flag(error.parameter)} {error.problem}, got {error.value!r}"
    text = str(error)
    if isinstance(error, MissingFeaturesError):
        text += f"\nMake it with:\n  {extract_command(args)}"
    if isinstance(error, WeightsError):
        text += "\nOn the command line: --weights PATH for a local file, --weights none for a random-init run."
    return text
