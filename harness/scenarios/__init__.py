"""Serving under load: MLPerf LoadGen scenarios, a dynamic batcher with model instances, the
server scenario's max-QPS search under a p99 bound, and the HTTP target.

* :mod:`harness.scenarios.config`  the suite's ``[serving]`` table and each case's serving knobs.
* :mod:`harness.scenarios.logparse` LoadGen's detail log -> validity, reasons, percentiles.
* :mod:`harness.scenarios.loadgen` one LoadGen run over a system under test, a log dir per run.
* :mod:`harness.scenarios.batcher` instances (each its own backend) behind a dynamic batcher.
* :mod:`harness.scenarios.search`  the highest Poisson QPS whose p99 meets the bound.
* :mod:`harness.scenarios.measure` a case's scenario measurement inside its worker.
* :mod:`harness.scenarios.server_app` a small KServe v2 / OpenAI-embeddings server around an
  infrabench backend (the ``http`` target's test server).

Nothing here imports ``mlperf_loadgen`` at module import time.
"""

from harness.scenarios.config import LOADGEN_SCENARIOS, SCENARIOS, ServingKnobs, ServingSettings

__all__ = ["LOADGEN_SCENARIOS", "SCENARIOS", "ServingKnobs", "ServingSettings"]
