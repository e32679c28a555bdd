"""The exception hierarchy: every error meant for the user derives from CvaeBenchError."""


class CvaeBenchError(Exception):
    """An error with a message fit to show the user as one line."""


class UsageError(CvaeBenchError):
    """A command line or sweep file that asks for something that cannot work: refused before any work starts.

    The command line exits with `USAGE_EXIT` for these (and for click's own usage errors), 1 for failures.
    """


#: The exit status of bad usage (an option, name or value refused before any work), as click and argparse use.
USAGE_EXIT = 2


class BackendUnavailableError(CvaeBenchError):
    """A registered backend whose framework is missing or broken."""


class UnknownBackendError(UsageError):
    """A backend name that no entry point registers."""


class PluginError(CvaeBenchError):
    """A plugin that does not implement the Backend contract."""


class DataError(CvaeBenchError):
    """A data set that cannot be found, read or verified."""


class WorkerError(CvaeBenchError):
    """A backend worker process that died, hung or reported an error."""


class OnnxExportError(CvaeBenchError):
    """An exporter's ONNX file that cannot be brought to the one interface, or fails the ONNX checker."""


class OnnxCheckError(ValueError, CvaeBenchError):
    """An ONNX file whose outputs in onnxruntime differ from the framework's beyond the tolerance."""


class TuningError(UsageError):
    """A tuning knob that does not exist, a value it does not take, or a knob that cannot act on the backend."""
