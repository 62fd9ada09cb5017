"""featx's own errors: every one names what was wrong and what to do instead."""


class FeatxError(Exception):
    """Base class of every error featx raises on purpose; the CLI exits 1 on it."""


class DatasetError(FeatxError):
    """The data folder or its manifest cannot be used (missing files, bad labels, ...)."""


class ImageDecodeError(FeatxError):
    """One image file cannot be decoded into pixels."""

    def __init__(self, path, reason):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")


class UnknownNameError(FeatxError):
    """A registry name (backbone, head, sampler, ...) that featx does not know."""

    def __init__(self, kind, name, available):
        self.name = name
        self.available = sorted(available)
        super().__init__(f"Unknown {kind} {name!r}. Available: {', '.join(self.available)}")


class WeightsError(FeatxError):
    """Weights cannot be found, downloaded, read or matched to the model."""


class CacheError(FeatxError):
    """A feature store or result file is missing, damaged or made for another request."""


class SplitError(FeatxError):
    """Folds cannot be built or the saved folds do not fit the data."""


class FetchError(FeatxError):
    """A download failed, was refused (checksum) or the sources are not what was expected."""


class ParameterError(FeatxError, ValueError):
    """A parameter value out of range or of the wrong kind.

    The message speaks of the parameter (``batch_size must be >= 1, got 0``); the command line
    turns ``parameter`` into its ``--flag``.
    """

    def __init__(self, parameter: str, value, problem: str):
        self.parameter = parameter
        self.value = value
        self.problem = problem
        super().__init__(f"{parameter} {problem}, got {value!r}")


class MissingFeaturesError(CacheError):
    """No feature store holds some of the images a computation needs; extract them first."""


class ModelFolderError(FeatxError):
    """A model folder is missing, damaged, incomplete, or holds a file featx refuses to load."""
