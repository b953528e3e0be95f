"""pytest-benchmark suite: minilm-l6 (batch 1, seq 128) over backend x variant.

pytest suites --benchmark-only --benchmark-json=out.json && infrabench import out.json
"""

from __future__ import annotations

import pytest

from harness.pytest_plugin import CaseBench

BACKENDS = ["torch-eager", "onnxruntime", "openvino"]
VARIANTS = ["fp32", "int8-dynamic", "int8-static"]


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_minilm(infrabench_case: CaseBench, backend: str, variant: str) -> None:
    row = infrabench_case("minilm-l6", variant, backend, batch_size=1, seq_len=128)
    assert row.status == "ok" and row.n_samples
