"""An already running inference server as a backend: KServe v2 (Triton, OpenVINO Model
Server), an OpenAI-compatible embeddings endpoint, or OpenAI-compatible streamed text
generation (OpenAI-compatible or Triton's generate extension) for the ``llm-server`` scenario
(:mod:`backends.http_openai`), over HTTP with httpx.

``run`` sends the prepared batch as one request and waits for the answer; the harness times it
(the network round trip is part of the latency, as a client sees it). Every wait is bounded by
``timeout_s`` (connect, read, write, pool): a refused connection, an HTTP error status, a stall
or a malformed answer raises ``BackendError`` with the reason, which a load scenario counts as a
failed request.

Protocols (option ``protocol``):

* ``kserve-v2``: ``POST {url}/v2/models/{model_name}/infer`` with every input as a tensor
  (``name``, ``shape``, ``datatype``, flat ``data``); the answer's ``outputs`` are the outputs.
* ``openai-embeddings``: ``POST {url}/v1/embeddings`` with ``input`` = one token-id list per
  row (``input_ids`` with the padding cut by ``attention_mask``), as the OpenAI API allows;
  ``data[i].embedding`` is row i of the model's first output.
* ``openai-completions``, ``openai-chat``, ``triton-generate`` (Triton's generate extension):
  ``llm-server`` only (``openai-completions`` is the default there), streamed; see
  :mod:`backends.http_openai`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from backends.http_openai import GENERATION_PROTOCOLS, OpenAiStreaming
from harness.backend import Artifact, BackendSettings, Capabilities
from harness.errors import BackendError, BackendUnavailable, ConfigError

PROTOCOLS = ("kserve-v2", "openai-embeddings", *GENERATION_PROTOCOLS)
_DTYPES = {"int64": "INT64", "int32": "INT32", "float32": "FP32", "float16": "FP16", "bool": "BOOL"}


class HttpBackend(OpenAiStreaming):
    """One client connection to ``options.url``; instances of a load case are connections."""

    name: ClassVar[str] = "http"
    capabilities: ClassVar[Capabilities] = Capabilities(
        consumes="onnx",
        serves=True,
        options={"url": str, "protocol": PROTOCOLS, "model_name": str, "timeout_s": float},
        runtime_modules=("httpx",),
        install_hint="pip install 'infrabench[serving]' (httpx)",
    )

    def __init__(self) -> None:
        self._client: Any = None
        self._inputs: Mapping[str, np.ndarray] = {}
        self._outputs: dict[str, np.ndarray] = {}
        self._output_names: tuple[str, ...] = ()
        self.url = ""
        self.protocol = "kserve-v2"
        self.model_name = "model"

    def check(self) -> None:
        try:
            import httpx  # noqa: F401
        except ImportError:
            raise BackendUnavailable(self.capabilities.install_hint) from None

    def versions(self) -> dict[str, str]:
        import httpx

        return {"httpx": httpx.__version__, "target": self.url}

    def load(self, artifact: Artifact, settings: BackendSettings) -> float | None:
        import httpx

        self.url = str(settings.options.get("url", "")).rstrip("/")
        if not self.url.startswith(("http://", "https://")):
            raise ConfigError(f"http backend: url must be http://HOST:PORT, got {self.url!r}")
        self.protocol = str(settings.options.get("protocol", "kserve-v2"))
        if self.protocol in GENERATION_PROTOCOLS:
            raise ConfigError(f"http backend: protocol {self.protocol} streams generated text: "
                              "scenario llm-server only")  # fmt: skip
        self.model_name = str(settings.options.get("model_name", "model"))
        timeout = float(settings.options.get("timeout_s", 10.0))
        self._output_names = settings.output_names
        self._client = httpx.Client(base_url=self.url, timeout=httpx.Timeout(timeout))
        return None

    def prepare(self, inputs: Mapping[str, np.ndarray]) -> None:
        self._inputs = inputs

    def run(self) -> int | None:
        if self.protocol == "kserve-v2":
            self._outputs = self._kserve()
        else:
            self._outputs = self._embeddings()
        return None

    def _post(self, path: str, body: dict[str, Any]) -> Any:
        import httpx

        try:
            response = self._client.post(path, json=body)
        except httpx.TimeoutException as exc:
            raise BackendError(f"{self.url}{path}: timed out ({type(exc).__name__})") from None
        except httpx.TransportError as exc:
            raise BackendError(f"{self.url}{path}: {type(exc).__name__}: {exc}") from None
        if response.status_code != 200:
            raise BackendError(
                f"{self.url}{path}: HTTP {response.status_code}: {response.text[:200]}"
            )
        try:
            return response.json()
        except ValueError:
            raise BackendError(f"{self.url}{path}: answer is not JSON") from None

    def _kserve(self) -> dict[str, np.ndarray]:
        tensors = [
            {"name": n, "shape": list(a.shape), "datatype": _DTYPES.get(str(a.dtype), "FP32"),
             "data": a.reshape(-1).tolist()}
            for n, a in self._inputs.items()
        ]  # fmt: skip
        answer = self._post(f"/v2/models/{self.model_name}/infer", {"inputs": tensors})
        try:
            return {
                o["name"]: np.asarray(o["data"], dtype=np.float32).reshape(o["shape"])
                for o in answer["outputs"]
            }
        except (KeyError, TypeError, ValueError) as exc:
            raise BackendError(f"{self.url}: malformed KServe v2 answer: {exc}") from None

    def _embeddings(self) -> dict[str, np.ndarray]:
        ids = self._inputs["input_ids"]
        mask = self._inputs.get("attention_mask", np.ones_like(ids))
        rows = [row[m.astype(bool)].tolist() for row, m in zip(ids, mask, strict=True)]
        answer = self._post("/v1/embeddings", {"model": self.model_name, "input": rows})
        try:
            data = sorted(answer["data"], key=lambda d: d["index"])
            embedding = np.asarray([d["embedding"] for d in data], dtype=np.float32)
        except (KeyError, TypeError, ValueError) as exc:
            raise BackendError(f"{self.url}: malformed embeddings answer: {exc}") from None
        return {(self._output_names or ("embedding",))[0]: embedding}

    def synchronize(self) -> None:
        return None  # the answer has arrived when run returns

    def outputs(self) -> dict[str, np.ndarray]:
        return self._outputs

    def executed_precision(self) -> str | None:
        return None  # the server's, unknown to a client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
        self.close_streams()
