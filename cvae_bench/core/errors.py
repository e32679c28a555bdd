"""The exception hierarchy: every error meant for the user derives from CvaeBenchError."""


class CvaeBenchError(Exception):
    """An error with a message fit to show the user as one line."""


class BackendUnavailableError(CvaeBenchError):
    """A registered backend whose framework is missing or broken."""


class UnknownBackendError(CvaeBenchError):
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


class TuningError(CvaeBenchError):
    """A tuning knob that does not exist, a value it does not take, or a knob that cannot act on the backend."""
