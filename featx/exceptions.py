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


class FileSystemError(FeatxError, OSError):
    """A file or folder featx reads or writes cannot be used: the message names the path and the
    cause in words (no space left, read-only, not a folder, is a folder, name too long, ...)."""

    def __init__(self, path, action: str, cause: str):
        self.path = str(path)
        self.action = action
        self.cause = cause
        FeatxError.__init__(self, f"{path}: cannot {action}: {cause}")

    def __str__(self) -> str:
        return self.args[0]


class RecordError(FeatxError):
    """A file featx reads back (a model manifest, a result, a split, provenance) does not fit its
    declared schema: the message names the file and the field."""


class ResourceError(FeatxError):
    """A request needs more of a resource (memory) than this machine has; the message gives the figure."""


class Terminated(BaseException):
    """SIGTERM arrived: unwinds like Ctrl-C so that workers and shared memory are released (exit 143)."""


class DivergedError(FeatxError):
    """Training made a loss, a weight or a prediction non-finite (a learning rate too high, usually):
    it stops there and nothing is saved.

    Parameters
    ----------
    where : str
        Where it was seen: ``fold 3, epoch 2 of 10``, a result file, a model folder.
    what : str
        What became non-finite.
    """

    def __init__(self, where: str, what: str):
        self.where = where
        super().__init__(f"training diverged in {where}: {what}; nothing was saved; use a lower --lr")
