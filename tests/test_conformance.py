"""Every registered backend that is usable here honours the Backend protocol on tiny-mlp."""

from __future__ import annotations

import numpy as np
import pytest

from harness.backend import BackendSettings, availability, backend_class, backend_names
from harness.case import Case, CaseSettings
from harness.measure.timing import TimingPolicy
from harness.models import get_model
from harness.optimize.artifacts import Artifact, build, cache_root
from harness.runner import measure_here

POLICY = TimingPolicy(budget_s=0.2, warmup_max_s=0.2, min_samples=10)
INT8_ONLY = {"fpga-sim"}  # simulates an int8 array: runs the int8 QDQ artifact
# tvm-tuned's tuning runs in workers (tests/test_tvm.py): in this process MetaSchedule's logging
# setup trips over pytest's capture handlers, so here it builds with no trials.
OPTIONS = {"tvm-tuned": {"trials": 0}}
# A client of a running server: tests/test_scenarios_http.py runs it against real ones.
NEEDS_SERVER = {"http": "needs a running server (tests/test_scenarios_http.py)"}


def _usable() -> list[object]:
    params = []
    for name in backend_names():
        reason = NEEDS_SERVER.get(name) or availability(name)
        marks = [pytest.mark.skip(reason=f"{name}: {reason}")] if reason else []
        params.append(pytest.param(name, marks=marks, id=name))
    return params


@pytest.fixture(scope="module")
def artifacts() -> dict[str, Artifact]:
    return {v: build("tiny-mlp", v, cache_root()) for v in ("fp32", "int8-static")}


def _variant(name: str) -> str:
    return "int8-static" if name in INT8_ONLY else "fp32"


@pytest.mark.parametrize("name", _usable())
def test_backend_runs_the_protocol(name: str, artifacts: dict[str, Artifact]) -> None:
    backend = backend_class(name)()
    assert backend.name == name
    backend.check()
    assert backend.versions()
    model = get_model("tiny-mlp")
    inputs = model.example_inputs(4, None)
    variant = _variant(name)
    settings = BackendSettings(
        threads=1,
        device=backend.capabilities.devices[0],
        options=OPTIONS.get(name, {}),
        input_shapes={k: v.shape for k, v in inputs.items()},
        input_names=model.input_names,
        output_names=model.output_names,
    )
    backend.load(artifacts[variant], settings)
    backend.prepare(inputs)
    assert backend.run() is None or backend.capabilities.own_clock
    backend.synchronize()
    outputs = backend.outputs()
    assert backend.executed_precision() == ("int8" if variant == "int8-static" else "fp32")
    backend.close()
    if backend.capabilities.computes_outputs:
        import torch

        from harness.measure.fidelity import mean_cosine

        with torch.inference_mode():
            expected = model.build_torch()(torch.from_numpy(inputs["x"])).numpy()
        assert list(outputs) == ["y"]
        if variant == "fp32":
            np.testing.assert_allclose(outputs["y"], expected, rtol=1e-4, atol=1e-5)
        else:
            assert mean_cosine(outputs["y"], expected) > 0.99


@pytest.mark.parametrize("name", _usable())
def test_backend_measures_through_the_harness(name: str, artifacts: dict[str, Artifact]) -> None:
    variant = _variant(name)
    case = Case(model="tiny-mlp", variant=variant, backend=name, batch_size=2, seq_len=None,
                threads=1, options=OPTIONS.get(name, {}),
                device=backend_class(name).capabilities.devices[0],
                settings=CaseSettings(timing=POLICY))  # fmt: skip
    result, samples = measure_here("r", case, artifacts[variant], artifacts["fp32"])
    assert result.status == "ok", result.reason
    assert result.threads == 1 and result.affinity is not None
    assert result.n_samples == len(samples) >= POLICY.min_samples
    assert result.latency_ms_p50 is not None and result.latency_ms_p50 > 0
    assert result.throughput_per_s == pytest.approx(2 * 1000 / float(np.mean(samples)))
    assert result.load_s is not None and result.model_mem_mb is not None
    assert result.peak_rss_mb is not None and result.peak_rss_mb > 0
    assert result.energy_source in ("measured", "estimated", "simulated")
    assert result.energy_j_per_inference is not None and result.energy_j_per_inference > 0


def test_a_missing_runtime_is_a_skip_with_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    from harness import backend

    monkeypatch.setattr(backend.importlib.util, "find_spec", lambda name: None)
    assert availability("openvino") == (
        'openvino is not installed (pip install "infrabench[openvino]")'
    )
