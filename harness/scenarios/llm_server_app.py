"""A text-generation server around an infrabench serving engine (the ``http`` target's
``llm-server`` test server), OpenAI-compatible and with Triton's generate extension, on
Starlette + uvicorn.

Routes: ``GET /health``; ``POST /v1/completions`` (``prompt``: text) and
``POST /v1/chat/completions`` (``messages``; the tokenizer's chat template), streamed as
Server-Sent Events when ``stream`` is true (a chunk per decode step, then a ``usage`` chunk when
``stream_options.include_usage``, then ``data: [DONE]``), else one JSON answer;
``POST /v2/models/NAME/generate_stream`` and ``.../generate`` (Triton's generate extension:
``text_input``, ``parameters.max_tokens``; ``text_output`` chunks, an ``error`` object on a
failure, the stream closed at the end). Honoured: ``max_tokens``, ``ignore_eos`` (otherwise
generation still runs to ``max_tokens``: the engines here ignore EOS), greedy decoding.

One thread owns the engine (a ``ServesRequests`` backend, e.g. openvino-genai's
``ContinuousBatchingPipeline``): it takes new requests from a queue, pumps the engine and hands
each step's tokens to the request's stream, so the engine's own scheduler batches concurrent
requests. ``--fail`` answers every generation request with HTTP 500 (fault tests). Run::

    python -m harness.scenarios.llm_server_app --model smollm2-135m --variant int8-weight \\
        --threads 2 --max-num-seqs 8 --port 8000

It listens on 127.0.0.1 unless ``--host`` says otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import queue
import threading
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from harness.backend import (
    GenerationSettings,
    OnEnd,
    OnTokens,
    ServeRequest,
    ServesRequests,
    backend_class,
)
from harness.errors import HarnessError

IDLE_WAIT_S = 0.1  # how often an idle engine thread checks that it should stop


class EngineThread:
    """The one thread that calls the engine. ``submit`` from any thread; each request's events
    (``("tokens", ids)``, ``("end", error, count)``) go to its asyncio queue on ``loop``."""

    def __init__(self, engine: ServesRequests) -> None:
        self.engine = engine
        self.incoming: queue.Queue[tuple[ServeRequest, Any, asyncio.AbstractEventLoop]] = (
            queue.Queue()
        )
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.live = 0  # requests submitted and not ended
        self.thread = threading.Thread(target=self._run, name="engine", daemon=True)
        self.thread.start()

    def submit(self, request: ServeRequest, events: asyncio.Queue[Any],
               loop: asyncio.AbstractEventLoop) -> None:  # fmt: skip
        self.incoming.put((request, events, loop))

    def _run(self) -> None:
        while not self.stop.is_set():
            # idle: block until a request comes (no polling delay on its arrival)
            block = self.live == 0
            while True:
                try:
                    request, events, loop = self.incoming.get(block, IDLE_WAIT_S)
                except queue.Empty:
                    break
                block = False
                with self.lock:
                    self.live += 1
                on_tokens, on_end = _callbacks(events, loop)

                def ended(error: str | None, count: int | None, on_end: OnEnd = on_end) -> None:
                    with self.lock:
                        self.live -= 1
                    on_end(error, count)

                try:
                    self.engine.submit(request, on_tokens, ended)
                except HarnessError as exc:
                    ended(str(exc).splitlines()[0], None)
            if self.live:
                self.engine.pump(0.0)


def _callbacks(
    events: asyncio.Queue[Any], loop: asyncio.AbstractEventLoop
) -> tuple[OnTokens, OnEnd]:
    """A request's ``on_tokens`` / ``on_end``, called on the engine thread, as events on its
    queue in the server's event loop."""

    def on_tokens(ids: Sequence[int]) -> None:
        loop.call_soon_threadsafe(events.put_nowait, ("tokens", list(ids)))

    def on_end(error: str | None, count: int | None) -> None:
        loop.call_soon_threadsafe(events.put_nowait, ("end", error, count))

    return on_tokens, on_end


def make_app(engine: ServesRequests, tokenizer: Any, model_name: str, fail: bool = False) -> Any:
    """The Starlette app serving ``engine`` (already loaded); ``tokenizer`` is a transformers
    tokenizer of the model (encode, decode, chat template)."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response, StreamingResponse
    from starlette.routing import Route

    worker = None if fail else EngineThread(engine)  # a failing server never loads its engine
    ids = itertools.count()

    async def health(_: Request) -> JSONResponse:
        return JSONResponse({"ready": True})

    def prompt_ids(body: dict[str, Any], chat: bool) -> np.ndarray:
        if chat:
            messages = body["messages"]
            if getattr(tokenizer, "chat_template", None):
                text = tokenizer.apply_chat_template(messages, tokenize=False,
                                                     add_generation_prompt=True)  # fmt: skip
            else:
                text = "\n".join(f"{m['role']}: {m['content']}" for m in messages)
        else:
            text = body["prompt"]
            if not isinstance(text, str):
                raise TypeError("prompt must be a string")
        return np.asarray(tokenizer.encode(text, add_special_tokens=False), dtype=np.int64)

    async def generate(request: Request, chat: bool) -> Response:
        if worker is None:
            return JSONResponse({"error": "failing on purpose (--fail)"}, status_code=500)
        try:
            body = await request.json()
            prompt = prompt_ids(body, chat)
            max_tokens = int(body.get("max_tokens") or 16)
        except (KeyError, TypeError, ValueError) as exc:
            return JSONResponse({"error": f"bad request: {exc}"}, status_code=400)
        rid = next(ids)
        events: asyncio.Queue[Any] = asyncio.Queue()
        worker.submit(ServeRequest(rid, prompt, "", max_tokens), events,
                      asyncio.get_running_loop())  # fmt: skip
        kind = "chat.completion" if chat else "text_completion"
        usage = {"prompt_tokens": int(prompt.size)}
        if not body.get("stream"):
            made: list[int] = []
            while (event := await events.get())[0] == "tokens":
                made += event[1]
            if event[1] is not None:
                return JSONResponse({"error": event[1]}, status_code=500)
            text = tokenizer.decode(made)
            choice = {"index": 0, "finish_reason": "length",
                      **({"message": {"role": "assistant", "content": text}} if chat
                         else {"text": text})}  # fmt: skip
            return JSONResponse({"id": f"cmpl-{rid}", "object": kind, "model": model_name,
                                 "choices": [choice],
                                 "usage": {**usage, "completion_tokens": len(made)}})  # fmt: skip
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        return StreamingResponse(_sse(events, rid, kind, chat, usage, include_usage),
                                 media_type="text/event-stream")  # fmt: skip

    async def _sse(events: asyncio.Queue[Any], rid: int, kind: str, chat: bool,
                   usage: dict[str, int], include_usage: bool) -> AsyncIterator[str]:  # fmt: skip
        made = 0
        created = int(time.time())
        while True:
            event = await events.get()
            if event[0] == "end":
                break
            made += len(event[1])
            piece = tokenizer.decode(event[1]) or " "  # never an empty chunk: it is a token
            choice = {"index": 0, "finish_reason": None,
                      **({"delta": {"content": piece}} if chat else {"text": piece})}  # fmt: skip
            yield _data({"id": f"cmpl-{rid}", "object": f"{kind}.chunk" if chat else kind,
                         "created": created, "model": model_name, "choices": [choice]})  # fmt: skip
        if event[1] is not None:  # the engine failed mid-stream: say so, and end without DONE
            yield _data({"error": {"message": event[1]}})
            return
        if include_usage:
            total = usage["prompt_tokens"] + made
            counts = {**usage, "completion_tokens": made, "total_tokens": total}
            yield _data({"id": f"cmpl-{rid}", "object": kind, "model": model_name,
                         "choices": [], "usage": counts})  # fmt: skip
        yield "data: [DONE]\n\n"

    async def triton(request: Request) -> Response:
        if worker is None:
            return JSONResponse({"error": "failing on purpose (--fail)"}, status_code=500)
        if request.path_params["model"] != model_name:
            return JSONResponse({"error": f"unknown model {request.path_params['model']!r}"},
                                status_code=404)  # fmt: skip
        try:
            body = await request.json()
            text = body["text_input"]
            if not isinstance(text, str):
                raise TypeError("text_input must be a string")
            max_tokens = int((body.get("parameters") or {}).get("max_tokens") or 16)
        except (KeyError, TypeError, ValueError) as exc:
            return JSONResponse({"error": f"bad request: {exc}"}, status_code=400)
        prompt = np.asarray(tokenizer.encode(text, add_special_tokens=False), dtype=np.int64)
        events: asyncio.Queue[Any] = asyncio.Queue()
        worker.submit(ServeRequest(next(ids), prompt, "", max_tokens), events,
                      asyncio.get_running_loop())  # fmt: skip
        head = {"model_name": model_name, "model_version": "1"}
        if request.url.path.endswith("/generate_stream"):
            return StreamingResponse(_triton_sse(events, head), media_type="text/event-stream")
        made: list[int] = []
        while (event := await events.get())[0] == "tokens":
            made += event[1]
        if event[1] is not None:
            return JSONResponse({"error": event[1]}, status_code=500)
        return JSONResponse({**head, "text_output": tokenizer.decode(made)})

    async def _triton_sse(events: asyncio.Queue[Any], head: dict[str, str]) -> AsyncIterator[str]:
        while (event := await events.get())[0] == "tokens":
            yield _data({**head, "text_output": tokenizer.decode(event[1]) or " "})
        if event[1] is not None:  # the engine failed mid-stream: an error object, then the end
            yield _data({"error": event[1]})

    async def completions(request: Request) -> Response:
        return await generate(request, chat=False)

    async def chat_completions(request: Request) -> Response:
        return await generate(request, chat=True)

    return Starlette(routes=[
        Route("/health", health),
        Route("/v1/completions", completions, methods=["POST"]),
        Route("/v1/chat/completions", chat_completions, methods=["POST"]),
        Route("/v2/models/{model}/generate", triton, methods=["POST"]),
        Route("/v2/models/{model}/generate_stream", triton, methods=["POST"]),
    ])  # fmt: skip


def _data(payload: dict[str, Any]) -> str:
    return f"data: {json.dumps(payload)}\n\n"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--variant", default="int8-weight")
    parser.add_argument("--backend", default="openvino")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--max-num-seqs", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=1024)
    parser.add_argument("--fail", action="store_true", help="answer HTTP 500 to generation")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    import uvicorn
    from transformers import AutoTokenizer

    from harness.environment import isa_flags
    from harness.execute import pin_cpus
    from harness.optimize.artifacts import build_artifact, cache_root
    from harness.optimize.variants import parse_variant

    pin_cpus(args.threads)
    artifact = build_artifact(args.model, args.variant, cache_root())
    model_dir = Path(artifact.directory)
    engine = backend_class(args.backend)()
    engine.check()
    if not isinstance(engine, ServesRequests):
        raise SystemExit(f"{args.backend} cannot serve generation requests")
    variant = parse_variant(args.variant)
    if not args.fail:
        engine.load_server(model_dir, GenerationSettings(
            threads=args.threads, batch_size=args.max_num_seqs, max_length=args.max_length,
            weight_bits=variant.weight_bits, kv_cache_int8=variant.kv_cache_int8,
            precision=variant.runtime_precision, isa_flags=tuple(isa_flags()),
            cache_dir=cache_root(),
        ))  # fmt: skip
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    app = make_app(engine, tokenizer, args.model, fail=args.fail)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
