"""Test servers started as their own processes on 127.0.0.1: a free port, a bounded wait for
the health endpoint, and a stop by the process's own id (terminate, then kill)."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def served(module: str, args: list[str], health: str, start_timeout_s: float) -> Iterator[str]:
    """``python -m module --port PORT *args`` from the repository root; yields its URL once
    ``GET health`` answers 200 (pytest.fail if it exits first or takes ``start_timeout_s``)."""
    import httpx

    port = free_port()
    command = [sys.executable, "-m", module, "--port", str(port), *args]
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        end = time.monotonic() + start_timeout_s
        while True:
            if proc.poll() is not None:
                pytest.fail(f"{module} exited: {proc.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{url}{health}", timeout=1.0).status_code == 200:
                    break
            if time.monotonic() > end:
                pytest.fail(f"{module} did not become ready in {start_timeout_s:g} s")
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        if proc.stderr is not None:
            proc.stderr.close()
