"""A real local Ray cluster: three nodes on 127.0.0.1 (``ray.cluster_utils.Cluster``, never
``ray start``), each advertising one hardware class, running fake-backend cases end to end.

Integration only: starting three raylets takes tens of seconds on two cores. Every process is
stopped by Ray's own shutdown; the test checks none of the cluster's raylets is left.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from harness.errors import ConfigError
from harness.launch.ray import RayLauncher
from harness.optimize.artifacts import cache_root
from harness.plan import plan
from harness.runner import Runner
from harness.store import Store
from harness.suite import load_suite

ray = pytest.importorskip("ray")
from ray.cluster_utils import Cluster  # noqa: E402

pytestmark = pytest.mark.integration

SUITE = """
    models = ["tiny-mlp"]
    backends = ["fake"]
    batch_sizes = [1, 2, 4]
    threads = [1]
    baseline = "fake/fp32"
    hardware = {hardware}
    retries = {retries}
    [measure]
    budget_s = 0.3
    warmup_max_s = 0.2
    timeout_s = {timeout}
    [options.fake]
    latency_ms = 0.05
    fail = "{fail}"
"""


def _raylets() -> set[int]:
    return {p.pid for p in psutil.process_iter(["name"]) if p.info["name"] == "raylet"}


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    before = _raylets()
    # a dead raylet is noticed after 3 missed health checks 0.5 s apart (default: minutes)
    health = {"health_check_period_ms": 500, "health_check_failure_threshold": 3}
    c = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 0, "resources": {"head": 1}, "_system_config": health},
    )
    nodes = [
        c.add_node(num_cpus=1, resources={"hw:cpu-avx2": 1}),
        c.add_node(num_cpus=1, resources={"hw:cpu-avx2": 1}),
        c.add_node(num_cpus=1, resources={"hw:gpu": 1}),  # no GPU here: the worker refuses it
    ]
    ray.init(address=c.address, log_to_driver=False)
    c.wait_for_nodes()
    try:
        yield c, nodes
    finally:
        ray.shutdown()
        c.shutdown()
        deadline = time.monotonic() + 30
        while _raylets() - before and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not _raylets() - before, "a raylet of the test cluster is still running"


def _run(write_suite: Callable[..., Path], store: Store, launcher: RayLauncher, **kw: Any) -> list:
    values = {"hardware": '["cpu-avx2"]', "retries": 0, "timeout": 60, "fail": "", **kw}
    suite = load_suite(write_suite(SUITE.format(**values)))
    run_id = Runner(store, cache_root(), launcher).run(plan(suite))
    return store.cases(run_id)


def test_cases_run_one_per_node_of_their_class(
    cluster: Any, write_suite: Callable[..., Path], store: Store
) -> None:
    launcher = RayLauncher()
    rows = _run(write_suite, store, launcher)
    assert [r.status for r in rows] == ["ok"] * 3, [r.reason for r in rows]
    avx2 = {n.node_id for n in cluster[1][:2]}
    assert {r.node for r in rows} <= avx2 and all(r.hardware_class == "cpu-avx2" for r in rows)
    by_node: dict[str, list[tuple[float, float]]] = {}
    for p in launcher.placements:
        by_node.setdefault(p.node, []).append((p.start, p.end))
    for spans in by_node.values():
        spans.sort()
        assert all(a[1] <= b[0] for a, b in itertools.pairwise(spans)), spans


def test_a_node_whose_fingerprint_contradicts_its_class_refuses_the_case(
    cluster: Any, write_suite: Callable[..., Path], store: Store
) -> None:
    rows = _run(write_suite, store, RayLauncher(), hardware='["gpu"]')
    assert {r.status for r in rows} == {"failed"}
    assert all("needs a GPU" in (r.reason or "") for r in rows), [r.reason for r in rows]
    assert {r.node for r in rows} == {cluster[1][2].node_id}


def test_a_class_with_no_node_is_an_error_at_once(cluster: Any) -> None:
    started = time.monotonic()
    with pytest.raises(ConfigError, match="no node advertises hardware class 'cpu-amx'"):
        RayLauncher().check(["cpu-avx2", "cpu-amx"])
    assert time.monotonic() - started < 10


def test_a_node_lost_mid_case_is_that_case_failed_row_and_the_run_goes_on(
    cluster: Any, write_suite: Callable[..., Path], store: Store
) -> None:
    c, _ = cluster
    spare = c.add_node(num_cpus=1, resources={"hw:cpu-lost": 1})
    c.wait_for_nodes()

    def kill_when_busy() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            busy = ray.available_resources().get("hw:cpu-lost", 0) < 1  # absent when in use
            if busy:
                time.sleep(1.0)
                c.remove_node(spare, allow_graceful=False)
                return
            time.sleep(0.2)

    killer = threading.Thread(target=kill_when_busy)
    killer.start()
    started = time.monotonic()
    rows = _run(write_suite, store, RayLauncher(start_s=15), hardware='["cpu-lost"]',
                fail="hang", timeout=20)  # fmt: skip
    killer.join(70)
    took = time.monotonic() - started
    reasons = [r.reason or "" for r in rows]
    assert {r.status for r in rows} == {"failed"}, reasons
    # The case on the node is lost (Ray reports the death on the task, or, where it does not,
    # the deadline finds the class one node short); the two queued behind it find no node.
    assert "node lost mid-case" in reasons[0], reasons
    assert all("no node of hardware class 'cpu-lost' is alive" in r for r in reasons[1:]), reasons
    assert took < 20 + 15 + 15, took  # the case's timeout + start allowance + slack
