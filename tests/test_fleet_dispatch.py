"""The fleet dispatcher's rules with an in-memory cluster and a fake clock: one task per node,
the missing-class error at once, deadlines, a lost node's retry. No engine, no sleeps."""

from __future__ import annotations

from collections.abc import Hashable

import pytest

from harness.launch.base import Outcome
from harness.launch.fleet import NodeLost, NodeResult, Placement, dispatch


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class FakeCluster:
    """Nodes per class; each task takes ``durations[index]`` seconds of the fake clock, or
    hangs (None), or loses its node on its first try (index in ``lose``)."""

    def __init__(self, clock: Clock, nodes: dict[str, int], durations: list[float | None],
                 lose: set[int] = frozenset()) -> None:  # fmt: skip
        self.clock, self.nodes, self.durations, self.lose = clock, dict(nodes), durations, lose
        self.running: dict[Hashable, tuple[int, str, float]] = {}
        self.tries: dict[int, int] = {}
        self.cancelled: list[int] = []
        self.peak: dict[str, int] = {}
        self.silent_loss: dict[int, str] = {}  # index -> a death the engine did not report

    def capacity(self, hardware: str) -> int:
        return self.nodes.get(hardware, 0)

    def submit(self, index: int, hardware: str) -> Hashable:
        handle = (index, self.tries.get(index, 0))
        self.tries[index] = self.tries.get(index, 0) + 1
        self.running[handle] = (index, hardware, self.clock.now)
        busy = sum(h == hardware for _, h, _ in self.running.values())
        assert busy <= self.nodes[hardware], "more tasks in flight than nodes of the class"
        self.peak[hardware] = max(self.peak.get(hardware, 0), busy)
        return handle

    def _end(self, handle: Hashable) -> float | None:
        index, _, start = self.running[handle]
        duration = self.durations[index]
        return None if duration is None else start + duration

    def wait(self, handles: list[Hashable], timeout_s: float) -> list[Hashable]:
        ends = [(e, h) for h in handles if (e := self._end(h)) is not None]
        limit = self.clock.now + timeout_s
        first = min((e for e, _ in ends), default=limit)
        self.clock.now = min(first, limit)
        return [h for e, h in ends if e <= self.clock.now]

    def result(self, handle: Hashable) -> NodeResult:
        index, hardware, start = self.running.pop(handle)
        if index in self.lose and self.tries[index] == 1:
            self.nodes[hardware] -= 1
            raise NodeLost("node n1 died")
        return NodeResult(Outcome.ok(index), f"{hardware}-node", start, self.clock.now)

    def lost(self, handle: Hashable) -> str | None:
        return self.silent_loss.get(handle[0])  # type: ignore[index]

    def cancel(self, handle: Hashable) -> None:
        if handle in self.running:
            self.cancelled.append(self.running.pop(handle)[0])


def _dispatch(cluster: FakeCluster, hardware: list[str], retries: int = 0, timeout: float = 10):
    placements: list[Placement] = []
    n = len(hardware)
    got = dict(dispatch(cluster, hardware, [timeout] * n, [retries] * n, placements, start_s=5,
                        clock=cluster.clock))  # fmt: skip
    assert sorted(got) == list(range(n))  # every task exactly once
    return got, placements


def test_at_most_one_task_per_node_and_all_nodes_busy() -> None:
    cluster = FakeCluster(Clock(), {"a": 2, "b": 1}, [1.0] * 5)
    got, placements = _dispatch(cluster, ["a", "a", "a", "b", "b"])
    assert {o.status for o in got.values()} == {"ok"}
    assert cluster.peak == {"a": 2, "b": 1}
    assert [got[i].node for i in range(5)] == ["a-node"] * 3 + ["b-node"] * 2
    assert cluster.clock.now == 2.0  # 3 tasks on 2 nodes of a, 2 on 1 node of b: two rounds
    assert len(placements) == 5


def test_a_class_with_no_node_fails_its_tasks_at_once() -> None:
    cluster = FakeCluster(Clock(), {"a": 1}, [1.0, 1.0])
    got, _ = _dispatch(cluster, ["a", "missing"])
    assert got[0].status == "ok"
    assert got[1].status == "failed" and got[1].error_kind == "no node"
    assert got[1].reason == "no node of hardware class 'missing' is alive"
    assert cluster.tries.get(1) is None


def test_a_hanging_task_is_cancelled_at_its_deadline() -> None:
    cluster = FakeCluster(Clock(), {"a": 1}, [None, 1.0])
    got, _ = _dispatch(cluster, ["a", "a"], timeout=10)
    assert got[0].status == "failed" and got[0].reason == "fleet: timed out after 15 s"
    assert cluster.cancelled == [0]
    assert got[1].status == "ok" and cluster.clock.now == pytest.approx(16.0)


def test_a_lost_node_fails_the_case_without_retries() -> None:
    cluster = FakeCluster(Clock(), {"a": 2}, [1.0, 1.0, 1.0], lose={0})
    got, _ = _dispatch(cluster, ["a", "a", "a"])
    assert got[0].status == "failed" and got[0].reason == "node lost mid-case: node n1 died"
    assert got[1].status == got[2].status == "ok"


def test_a_lost_node_is_retried_on_another_node_of_the_class() -> None:
    cluster = FakeCluster(Clock(), {"a": 2}, [1.0, 1.0], lose={0})
    got, placements = _dispatch(cluster, ["a", "a"], retries=1)
    assert got[0].status == "ok" and cluster.tries[0] == 2
    assert [p.index for p in placements].count(0) == 1


def test_the_last_node_lost_leaves_the_retry_a_clear_reason() -> None:
    cluster = FakeCluster(Clock(), {"a": 1}, [1.0], lose={0})
    got, _ = _dispatch(cluster, ["a"], retries=2)
    assert got[0].reason == (
        "node lost mid-case: node n1 died; no node of hardware class 'a' is alive"
    )


def test_a_node_death_the_engine_never_reported_is_found_at_the_deadline() -> None:
    cluster = FakeCluster(Clock(), {"a": 1}, [None])
    cluster.silent_loss[0] = "node n1 of class 'a' died"
    got, _ = _dispatch(cluster, ["a"], timeout=10)
    assert got[0].error_kind == "node lost"
    assert got[0].reason == "node lost mid-case: no result in 15 s; node n1 of class 'a' died"
