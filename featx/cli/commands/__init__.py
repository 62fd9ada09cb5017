"""One module per command, each with ``register(subparsers, common)`` and ``run(args) -> int``."""

from featx.cli.commands import (
    audit,
    compare,
    data,
    extract,
    finetune,
    fit,
    models,
    predict,
    reproduce,
    select,
    train,
    validate,
)

COMMANDS = (models, extract, fit, compare, select, finetune, train, predict, validate, reproduce, audit, data)
