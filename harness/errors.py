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


_LOCATION_ONLY = (
    r"^(exception from |check .* failed at |file \"|traceback |at |in )"
    r"|\.(cpp|cc|cxx|c|h|hpp|py|cu)[:(]\d+\)?:?\s*$"
)


def informative_line(text: str, limit: int = 300) -> str:
    """The line of a (possibly multi-line) runtime error message that says what went wrong:
    the first line that is not just a source location (``Exception from src/x.cpp:121:``,
    ``Check 'false' failed at ...``, a traceback frame) nor a heading ending in ``:``; cut to
    ``limit`` characters. ``no message`` for an empty text."""
    import re

    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if not lines:
        return "no message"
    meaningful = [line for line in lines if not re.search(_LOCATION_ONLY, line, re.I)]
    chosen = next((line for line in meaningful if not line.endswith(":")), None)
    line = chosen or (meaningful or lines)[0]
    return line if len(line) <= limit else line[: limit - 3] + "..."
