"""Run one function in a fresh, spawned worker process, with a timeout.

The worker sends its JSON-able result back over a pipe. A crash (signal, ``os._exit``), a hang
past the timeout or an exception becomes a ``WorkerError`` in the parent, carrying the reason and
the tail of what the worker printed; the parent goes on. Inline mode runs the function in this
process, for debugging.
"""

from __future__ import annotations

import importlib
import multiprocessing
import os
import signal
import tempfile
import time
import traceback
from collections.abc import Callable
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

from harness.errors import HarnessError, WorkerError

Payload = dict[str, Any]

# In a worker: the pipe to the parent; inline: the parent's progress callback.
_progress_sink: Callable[[str], None] | None = None


def report_progress(text: str) -> None:
    """Show ``text`` as the current activity in the parent's progress display (e.g. training)."""
    if _progress_sink is not None:
        _progress_sink(text)


def resolve(target: str) -> Callable[[Payload], Payload]:
    """``"package.module:function"`` -> the function."""
    module_name, _, attr = target.partition(":")
    func: Callable[[Payload], Payload] = getattr(importlib.import_module(module_name), attr)
    return func


def _tail(path: Path, lines: int = 12) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.strip().splitlines()[-lines:])


def _entry(
    target: str, payload: Payload, conn: Connection, log_path: str, env: dict[str, str]
) -> None:
    # Thread-pool sizes must be in the environment before numpy or a runtime is imported.
    os.environ.update(env)
    # Runtimes print to the C-level stdout/stderr; keep that off the user's progress display.
    log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    global _progress_sink
    _progress_sink = lambda text: conn.send(("progress", text))  # noqa: E731
    try:
        conn.send(("ok", resolve(target)(payload)))
    except BaseException as exc:  # any failure of the case becomes its reason
        conn.send(("error", *_failure(exc)))
    finally:
        conn.close()


def _failure(exc: BaseException) -> tuple[str, str, str]:
    """(kind, message, traceback) of a failed call: our own errors need no traceback."""
    trace = "" if isinstance(exc, HarnessError) else traceback.format_exc(limit=8)
    return type(exc).__name__, str(exc), trace


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "did not exit"
    if code < 0:
        try:
            return f"killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with code {code} without sending a result"


def call(
    target: str,
    payload: Payload,
    timeout_s: float,
    inline: bool = False,
    env: dict[str, str] | None = None,
    on_progress: Callable[[str], None] | None = None,
) -> Payload:
    """Run ``target(payload)`` in a fresh process, with ``env`` added, and return its result.

    Raises ``WorkerError`` on a crash, a timeout or an exception in the worker; the error's
    ``kind`` says which (``crashed``, ``timeout``, or the exception's class name) and ``detail``
    holds the worker's traceback or the tail of its output.
    """
    global _progress_sink
    if inline:
        # Same outcome as a worker's, minus the isolation: a failure is a WorkerError.
        _progress_sink = on_progress
        try:
            return resolve(target)(payload)
        except Exception as exc:
            kind, text, trace = _failure(exc)
            raise WorkerError(f"{kind}: {text}", kind, trace) from exc
        finally:
            _progress_sink = None
    ctx = multiprocessing.get_context("spawn")
    parent_conn, child_conn = ctx.Pipe(duplex=False)
    with tempfile.NamedTemporaryFile(prefix="infrabench-worker-", suffix=".log") as log:
        log_path = Path(log.name)
        proc = ctx.Process(
            target=_entry, args=(target, payload, child_conn, str(log_path), env or {}), daemon=True
        )
        proc.start()
        child_conn.close()
        deadline = time.monotonic() + timeout_s
        try:
            while True:
                left = deadline - time.monotonic()
                ready = wait([parent_conn, proc.sentinel], timeout=max(left, 0))
                if not ready:
                    raise WorkerError(
                        f"timed out after {timeout_s:g} s", "timeout", _tail(log_path)
                    )
                message = parent_conn.recv() if parent_conn.poll() else None
                if message is None or message[0] != "progress":
                    break
                if on_progress is not None:
                    on_progress(message[1])
            if message is None:
                proc.join(5)
                raise WorkerError(
                    f"worker {_describe_exit(proc.exitcode)}", "crashed", _tail(log_path)
                )
            if message[0] == "ok":
                result: Payload = message[1]
                return result
            _, kind, text, trace = message
            raise WorkerError(f"{kind}: {text}", kind, trace or _tail(log_path))
        except EOFError:
            proc.join(5)
            raise WorkerError(
                f"worker {_describe_exit(proc.exitcode)}", "crashed", _tail(log_path)
            ) from None
        finally:
            if proc.is_alive():
                proc.kill()
            proc.join(5)
            parent_conn.close()
