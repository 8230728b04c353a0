"""The project's exception types.

Every error a user can cause derives from :class:`HarnessError`; the CLI turns it into one line on
stderr and exit code 2. Errors raised inside a trial are recorded on the trial as its failure reason.
"""


class HarnessError(Exception):
    """Base class: a problem the user can fix, reported in one line."""


class ConfigError(HarnessError):
    """Bad command-line option, suite file or method configuration."""


class DataError(HarnessError):
    """A data set that cannot be found, read or split as asked."""


class PluginError(HarnessError):
    """A plugin that cannot be loaded, or that broke the hook contract."""


class UnknownMethodError(ConfigError):
    """A method name no loaded plugin provides."""


class PluginOutputError(PluginError):
    """A plugin returned something that is not valid class probabilities."""


class DivergedError(HarnessError):
    """Training produced a non-finite loss."""


def failure_reason(exc: BaseException) -> str:
    """``exc`` as the one line stored as a failed trial's or seed's reason."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if isinstance(exc, HarnessError) else f"{type(exc).__name__}: {text}"


class StorageUnavailableError(HarnessError):
    """The study storage stayed unreachable past the time a process waits for it."""
