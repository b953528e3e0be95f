"""Shared fixtures: the fake clock and backend, a temporary store and artifact cache."""

from __future__ import annotations

import os
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from backends.fake import FakeBackend, FakeClock
from harness.store import Store


@pytest.fixture(autouse=True, scope="session")
def _artifact_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One artifact cache for the whole session, so each model is exported once."""
    cache = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("INFRABENCH_CACHE", str(cache))
        mp.setenv("HF_HUB_OFFLINE", "1")
        yield cache


@pytest.fixture(autouse=True)
def _keep_affinity() -> Iterator[None]:
    """Inline cases pin this process to their threads' CPUs; every test starts and ends with
    the CPUs the session had (a subprocess inherits them, and would see fewer usable CPUs)."""
    allowed = os.sched_getaffinity(0)
    yield
    os.sched_setaffinity(0, allowed)


@pytest.fixture
def fake_clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def fake_backend(fake_clock: FakeClock) -> Callable[[Callable[[int], int]], FakeBackend]:
    """A factory: ``fake_backend(durations)`` -> a FakeBackend that advances ``fake_clock``."""

    def make(durations: Callable[[int], int]) -> FakeBackend:
        return FakeBackend(clock=fake_clock, durations=durations)

    return make


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "results" / "test.duckdb") as s:
        yield s


@pytest.fixture
def write_suite(tmp_path: Path) -> Callable[[str], Path]:
    """Write a suite file into a temp dir and return its path."""

    def write(body: str, name: str = "suite.toml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(body))
        return path

    return write
