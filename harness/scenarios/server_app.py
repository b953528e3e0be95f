"""A small inference server around one infrabench backend: KServe v2 and OpenAI-style
embeddings, on Starlette + uvicorn. It is the ``http`` target's test server (and a way to see
what a network hop costs against the same backend in process).

Routes: ``GET /v2/health/ready``; ``POST /v2/models/{name}/infer`` (KServe v2 tensors in and
out); ``POST /v1/embeddings`` (``input``: token-id lists; each is run as one row, padded to the
longest, with its attention mask). One backend instance serves requests one at a time (a lock);
inference runs in a worker thread so the event loop stays responsive. A backend error is HTTP
500 with its text. Run::

    python -m harness.scenarios.server_app --model minilm-l6 --backend onnxruntime --port 8000

It listens on 127.0.0.1 unless ``--host`` says otherwise.
"""

from __future__ import annotations

import argparse
import threading
from collections.abc import Mapping
from typing import Any

import numpy as np

from harness.backend import Backend, BackendSettings, backend_class
from harness.errors import HarnessError
from harness.models import get_model
from harness.optimize.artifacts import build_artifact, cache_root

_NUMPY = {"INT64": np.int64, "INT32": np.int32, "FP32": np.float32, "FP16": np.float16,
          "BOOL": np.bool_}  # fmt: skip


def make_app(backend: Backend, model_name: str) -> Any:
    """The Starlette app serving ``backend`` (already loaded) as model ``model_name``."""
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    lock = threading.Lock()

    def infer(inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        with lock:
            backend.prepare(inputs)
            backend.run()
            backend.synchronize()
            return backend.outputs()

    async def ready(_: Request) -> JSONResponse:
        return JSONResponse({"ready": True})

    async def kserve(request: Request) -> JSONResponse:
        try:
            body = await request.json()
            inputs = {
                t["name"]: np.asarray(t["data"], dtype=_NUMPY[t["datatype"]]).reshape(t["shape"])
                for t in body["inputs"]
            }
        except (KeyError, TypeError, ValueError) as exc:
            return JSONResponse({"error": f"bad request: {exc}"}, status_code=400)
        try:
            outputs = await run_in_threadpool(infer, inputs)
        except HarnessError as exc:
            return JSONResponse({"error": str(exc)}, status_code=500)
        return JSONResponse({"model_name": model_name, "outputs": [
            {"name": n, "shape": list(a.shape), "datatype": "FP32", "data": a.reshape(-1).tolist()}
            for n, a in outputs.items()
        ]})  # fmt: skip

    async def embeddings(request: Request) -> JSONResponse:
        try:
            rows = (await request.json())["input"]
            width = max(len(r) for r in rows)
            ids = np.zeros((len(rows), width), dtype=np.int64)
            mask = np.zeros_like(ids)
            for i, row in enumerate(rows):
                ids[i, : len(row)], mask[i, : len(row)] = row, 1
        except (KeyError, TypeError, ValueError) as exc:
            return JSONResponse({"error": f"bad request: {exc}"}, status_code=400)
        inputs = {"input_ids": ids, "attention_mask": mask}
        try:
            outputs = await run_in_threadpool(infer, inputs)
        except HarnessError as exc:
            return JSONResponse({"error": str(exc)}, status_code=500)
        first = np.asarray(next(iter(outputs.values())))
        data = [{"object": "embedding", "index": i, "embedding": first[i].reshape(-1).tolist()}
                for i in range(len(rows))]  # fmt: skip
        return JSONResponse({"object": "list", "model": model_name, "data": data})

    return Starlette(routes=[
        Route("/v2/health/ready", ready),
        Route("/v2/models/{name}/infer", kserve, methods=["POST"]),
        Route("/v1/embeddings", embeddings, methods=["POST"]),
    ])  # fmt: skip


def _option(text: str) -> tuple[str, Any]:
    key, _, value = text.partition("=")
    for kind in (int, float):
        try:
            return key, kind(value)
        except ValueError:
            pass
    return key, value


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="minilm-l6")
    parser.add_argument("--variant", default="fp32")
    parser.add_argument("--backend", default="onnxruntime")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--option", action="append", default=[], help="backend option k=v")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    import uvicorn

    model = get_model(args.model)
    artifact = build_artifact(args.model, args.variant, cache_root())
    backend = backend_class(args.backend)()
    backend.check()
    backend.load(artifact, BackendSettings(
        threads=args.threads, options=dict(_option(o) for o in args.option), input_shapes={},
        input_names=tuple(model.input_names), output_names=tuple(model.output_names),
        cache_dir=cache_root(),
    ))  # fmt: skip
    uvicorn.run(make_app(backend, args.model), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
