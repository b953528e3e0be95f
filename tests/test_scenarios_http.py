"""The http target against real servers on 127.0.0.1: the Starlette test server around the
fake backend (KServe v2 and OpenAI embeddings), a server that answers 500, a port that refuses
and a socket that accepts and never answers. Every server is started here with a bounded
start-up wait and stopped by its own process id; every request has a bounded timeout."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from backends.http import HttpBackend
from harness.backend import BackendSettings
from harness.case import Case, CaseSettings
from harness.errors import BackendError
from harness.launch import InlineLauncher
from harness.measure.clock import PerfCounterClock
from harness.optimize.artifacts import build_artifact, cache_root
from harness.plan import Selection, plan
from harness.runner import Runner
from harness.scenarios.config import ServingKnobs, ServingSettings
from harness.scenarios.measure import infer_fn, run_scenario, samples_of
from harness.store import Store
from harness.suite import load_suite
from tests.servers import free_port, served

pytest.importorskip("mlperf_loadgen", reason="MLPerf LoadGen not installed (infrabench[serving])")
pytest.importorskip("httpx", reason="httpx not installed (infrabench[serving])")
pytest.importorskip("uvicorn", reason="uvicorn not installed (infrabench[serving])")

START_TIMEOUT_S = 60.0


@contextlib.contextmanager
def _server(*options: str) -> Iterator[str]:
    """The test server around the fake backend for tiny-mlp; yields its URL."""
    build_artifact("tiny-mlp", "fp32", cache_root())  # built here, not in the server's start-up
    args = ["--model", "tiny-mlp", "--backend", "fake", *(f"--option={o}" for o in options)]
    with served("harness.scenarios.server_app", args, "/v2/health/ready", START_TIMEOUT_S) as url:
        yield url


@pytest.fixture(scope="module")
def healthy() -> Iterator[str]:
    with _server("sleep_ms=1") as url:
        yield url


def _client(url: str, protocol: str = "kserve-v2", timeout_s: float = 5.0) -> HttpBackend:
    backend = HttpBackend()
    backend.check()
    options = {"url": url, "protocol": protocol, "model_name": "tiny-mlp", "timeout_s": timeout_s}
    settings = BackendSettings(threads=1, options=options, output_names=("embedding",))
    backend.load(build_artifact("tiny-mlp", "fp32", cache_root()), settings)
    return backend


def _case(scenario: str, instances: int = 1, queries: int = 16) -> Case:
    serving = ServingSettings(
        loadgen=True, short_duration_ms=100, short_query_count=queries, search_budget_s=1.0
    )
    settings = CaseSettings(serving=serving)
    return Case("tiny-mlp", "fp32", "http", 1, None, 1, scenario=scenario, settings=settings,
                serving=ServingKnobs(instances))  # fmt: skip


def test_kserve_v2_round_trips_the_tensors(healthy: str) -> None:
    client = _client(healthy)
    x = np.arange(32, dtype=np.float32).reshape(2, 16)
    client.prepare({"x": x})
    client.run()
    np.testing.assert_array_equal(client.outputs()["x"], x)  # the fake echoes its inputs
    client.close()


def test_openai_embeddings_send_token_lists_cut_at_the_mask(healthy: str) -> None:
    client = _client(healthy, "openai-embeddings")
    ids = np.array([[5, 6, 7, 0], [8, 9, 0, 0]])
    client.prepare({"input_ids": ids, "attention_mask": (ids > 0).astype(np.int64)})
    client.run()
    # the fake's first output is the server's padded input_ids, one row per request row
    np.testing.assert_array_equal(client.outputs()["embedding"], [[5, 6, 7], [8, 9, 0]])
    client.close()


def test_the_server_scenario_over_http_has_no_errors(healthy: str, tmp_path: Path) -> None:
    case = _case("server", instances=2)
    clients = [_client(healthy) for _ in range(2)]
    load, latencies = run_scenario(
        case, [infer_fn(c) for c in clients], samples_of(case), PerfCounterClock(),
        log_root=tmp_path,
    )  # fmt: skip
    for c in clients:
        c.close()
    assert load.errors == 0 and load.error_rate == 0.0 and load.requests == len(latencies) > 0
    assert load.achieved_qps and load.target_qps and load.probes


def _stalling_socket() -> tuple[str, threading.Event]:
    """A listener on 127.0.0.1 that accepts connections and never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    stop = threading.Event()
    held: list[socket.socket] = []

    def accept() -> None:
        sock.settimeout(0.1)
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                held.append(sock.accept()[0])
        for conn in held:
            conn.close()
        sock.close()

    threading.Thread(target=accept, daemon=True).start()
    return f"http://127.0.0.1:{sock.getsockname()[1]}", stop


@pytest.mark.parametrize("failure", ["refused", "http-500", "stall"])
def test_a_failing_target_gives_counted_failures_and_a_reason_never_a_hang(
    failure: str, tmp_path: Path
) -> None:
    with contextlib.ExitStack() as stack:
        if failure == "refused":
            url, expected = f"http://127.0.0.1:{free_port()}", "ConnectError"
        elif failure == "http-500":
            url, expected = stack.enter_context(_server("fail=run")), "HTTP 500"
        else:
            url, stop = _stalling_socket()
            stack.callback(stop.set)
            expected = "timed out"
        client = _client(url, timeout_s=0.3)
        client.prepare({"x": np.zeros((1, 16), dtype=np.float32)})
        with pytest.raises(BackendError, match=expected):
            client.run()
        case = _case("single-stream", queries=4)
        start = time.monotonic()
        load, _ = run_scenario(case, [infer_fn(client)], samples_of(case), PerfCounterClock(),
                               log_root=tmp_path)  # fmt: skip
        client.close()
    assert time.monotonic() - start < 5  # one request, 0.3 s timeout
    assert (load.requests, load.errors, load.error_rate, load.valid) == (1, 1, 1.0, False)
    assert load.reasons[0].startswith("1 of 1 requests failed: ") and expected in load.reasons[0]
    assert "calibration failed: LoadGen not run" in load.reasons


@pytest.fixture
def http_registered(monkeypatch: pytest.MonkeyPatch) -> None:
    """The http backend in the registry even where the installed entry points predate it
    (an editable install registers it on ``pip install -e .``)."""
    from importlib.metadata import EntryPoint, entry_points

    import harness.backend as registry

    def with_http(group: str) -> list[EntryPoint]:
        found = list(entry_points(group=group))
        if group == registry.ENTRY_POINT_GROUP and "http" not in {e.name for e in found}:
            found.append(EntryPoint("http", "backends.http:HttpBackend", group))
        return found

    monkeypatch.setattr(registry, "entry_points", with_http)


def test_run_with_target_measures_the_server_and_stores_the_rows(
    healthy: str, http_registered: None, write_suite: Callable[..., Path], store: Store
) -> None:
    body = """
        models = ["tiny-mlp"]
        backends = ["fake"]
        threads = [1]
        scenario = ["single-stream", "server"]
        baseline = "http/fp32"
        [serving]
        loadgen = true
        short_duration_ms = 100
        short_query_count = 16
        search_budget_s = 1
    """
    selection = Selection(target=healthy)
    planned = plan(load_suite(write_suite(body)), selection)
    assert {(c.backend, c.options["url"]) for c in planned.cases} == {("http", healthy)}
    run_id = Runner(store, cache_root(), InlineLauncher()).run(planned)
    rows = store.cases(run_id)
    assert [(r.scenario, r.status, r.error_rate) for r in rows] == [
        ("single-stream", "ok", 0.0), ("server", "ok", 0.0),
    ]  # fmt: skip
    assert all(r.achieved_qps for r in rows)
