"""The exception tree of infrabench.

HarnessError                 root; the CLI prints ``str(err)`` on one line
├── ConfigError              bad user input (suite file, CLI option, store path): exit 2
├── BackendUnavailable       the runtime is missing or unusable here: the case is *skipped*
├── VariantNotApplicable     the variant's recipe does not apply to this model: *skipped*
├── BackendError             the runtime failed while loading or running: the case *failed*
├── MeasurementError         the timing loop could not produce a valid sample set
├── WorkerError              a worker process crashed, hung or sent nothing back
└── StoreError               the results store is unreadable or of an unknown schema
"""


class HarnessError(Exception):
    """Root of every error infrabench raises on purpose."""


class ConfigError(HarnessError):
    """Bad user input; the message names where it was, what was wrong and what is allowed."""


class BackendUnavailable(HarnessError):
    """The backend cannot run here; the message is the reason shown next to the skipped case."""


class VariantNotApplicable(HarnessError):
    """The variant's recipe does not apply to this model; the message says why (skipped)."""


class BackendError(HarnessError):
    """The backend's runtime failed on this case."""


class MeasurementError(HarnessError):
    """Timing produced no usable samples (e.g. a zero or negative duration)."""


class WorkerError(HarnessError):
    """A worker process died, timed out or raised.

    ``kind`` is ``crashed``, ``timeout`` or the worker exception's class name; ``detail`` holds
    the worker's traceback or the tail of what it printed.
    """

    def __init__(self, message: str, kind: str = "crashed", detail: str = "") -> None:
        super().__init__(message)
        self.kind = kind
        self.detail = detail


class StoreError(HarnessError):
    """The results store cannot be opened or read."""
