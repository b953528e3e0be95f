"""The ``http`` target's serving side: text generation, streamed, OpenAI-compatible or over
Triton's generate extension.

``openai-completions`` posts ``/v1/completions`` with ``prompt`` (the prompt's text);
``openai-chat`` posts ``/v1/chat/completions`` with one user message. Both ask for
``stream: true`` with ``stream_options.include_usage`` (the last chunk's ``usage`` gives the
output token count), ``max_tokens`` = ``min_tokens`` = the request's tokens, ``ignore_eos``
(vLLM's and OpenVINO Model Server's extension; a server that ignores it may stop early, and
usage says so) and greedy decoding (``temperature: 0``). ``triton-generate`` posts Triton's
generate extension on the KServe v2 URL space (``/v2/models/NAME/generate_stream``,
docs/protocol/extension_generate.md of triton-inference-server/server: ``text_input`` and a
``parameters`` object, here the same sampling parameters with ``stream: true``); its chunks carry
``text_output``, an ``error`` object reports a failure after the 200 status, and the stream ends
when the server closes it (no usage: the output tokens are the chunks counted, so a server that
sends several tokens in one chunk gets a TPOT per chunk, and one that stops early is not told
from one that finished; Triton's vLLM and TensorRT-LLM backends stream a token per chunk).

The answer is Server-Sent Events read with httpx's streaming API: each ``data:`` chunk whose
``choices[].text`` (completions), ``choices[].delta.content`` (chat) or ``text_output``
(Triton) is non-empty is one ``on_tokens`` event (its first is the TTFT, as vLLM's
``benchmark_serving`` times it); ``data: [DONE]`` ends an OpenAI stream. Each request streams on
its own thread of a pool of ``MAX_STREAMS``. Every wait is bounded by ``timeout_s`` (connect,
and each read: a server that stops sending mid-stream fails the request), besides the harness's
per-request deadline.
A refused connection, an HTTP error status, a timeout or a malformed chunk ends the request with
the reason, one line; nothing is raised to the harness.
"""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from harness.backend import (
    GENERATION_PROTOCOLS,
    GenerationSettings,
    OnEnd,
    OnTokens,
    ServeRequest,
)
from harness.errors import ConfigError

MAX_STREAMS = 64  # concurrent streamed requests (threads and pooled connections)
PATHS = {"openai-completions": "/v1/completions", "openai-chat": "/v1/chat/completions"}


class _ServerError(Exception):
    """An error object the server sent inside a stream whose status was already 200."""


class OpenAiStreaming:
    """Mixed into ``HttpBackend``: implements ``harness.backend.ServesRequests``."""

    url: str
    protocol: str
    model_name: str
    _stream_client: Any = None
    _pool: ThreadPoolExecutor | None = None
    _closing: bool = False

    def load_server(self, model_dir: Path, settings: GenerationSettings) -> float | None:
        import httpx

        options = settings.options
        self.url = str(options.get("url", "")).rstrip("/")
        if not self.url.startswith(("http://", "https://")):
            raise ConfigError(f"http backend: url must be http://HOST:PORT, got {self.url!r}")
        self.protocol = str(options.get("protocol", "openai-completions"))
        if self.protocol not in GENERATION_PROTOCOLS:
            raise ConfigError(f"http backend: protocol {self.protocol!r} does not generate text; "
                              f"allowed: {', '.join(GENERATION_PROTOCOLS)}")  # fmt: skip
        self.model_name = str(options.get("model_name", "model"))
        timeout = float(options.get("timeout_s", 10.0))
        limits = httpx.Limits(max_connections=MAX_STREAMS, max_keepalive_connections=MAX_STREAMS)
        self._stream_client = httpx.Client(base_url=self.url, timeout=httpx.Timeout(timeout),
                                           limits=limits)  # fmt: skip
        self._pool = ThreadPoolExecutor(MAX_STREAMS, thread_name_prefix="infrabench-stream")
        self._event = threading.Event()
        self._cancelled: set[int] = set()
        self._lock = threading.Lock()
        self._open = 0  # streams submitted and not finished
        return None

    def _path(self) -> str:
        if self.protocol == "triton-generate":
            return f"/v2/models/{self.model_name}/generate_stream"
        return PATHS[self.protocol]

    def _body(self, request: ServeRequest) -> dict[str, Any]:
        sampling = {"max_tokens": request.max_new_tokens, "min_tokens": request.max_new_tokens,
                    "ignore_eos": True, "temperature": 0.0}  # fmt: skip
        if self.protocol == "triton-generate":
            return {"text_input": request.prompt_text,
                    "parameters": {**sampling, "stream": True}}  # fmt: skip
        body: dict[str, Any] = {"model": self.model_name, "stream": True,
                                "stream_options": {"include_usage": True}, **sampling}  # fmt: skip
        if self.protocol == "openai-chat":
            body["messages"] = [{"role": "user", "content": request.prompt_text}]
        else:
            body["prompt"] = request.prompt_text
        return body

    def submit(self, request: ServeRequest, on_tokens: OnTokens, on_end: OnEnd) -> None:
        """Start streaming ``request`` on a pool thread at once. With ``MAX_STREAMS`` streams
        already open the request fails now, with that reason: queueing it in this client would
        bill the client's wait to the server's TTFT."""
        if self._pool is None:
            raise ConfigError("http backend: load_server was not called")
        with self._lock:
            if self._open >= MAX_STREAMS:
                on_end(f"client: {MAX_STREAMS} streams already open (infrabench's limit); the "
                       "request was not sent", None)  # fmt: skip
                return
            self._open += 1
        self._pool.submit(self._stream, request, on_tokens, on_end)

    def _stream(self, request: ServeRequest, on_tokens: OnTokens, on_end: OnEnd) -> None:
        import httpx

        path = self._path()
        where = f"{self.url}{path}"

        def gone() -> bool:
            return self._closing or request.request_id in self._cancelled

        try:
            if gone():  # cancelled before its thread ran: never sent, no callback
                return
            with self._stream_client.stream("POST", path, json=self._body(request)) as answer:
                if answer.status_code != 200:
                    text = answer.read().decode(errors="replace")[:200].replace("\n", " ")
                    on_end(f"{where}: HTTP {answer.status_code}: {text}", None)
                    return
                usage = self._read_events(answer, request.request_id, on_tokens)
                if not gone():  # a cancelled request gets no callback
                    on_end(None, usage)
        except httpx.TimeoutException as exc:
            on_end(f"{where}: timed out ({type(exc).__name__})", None)
        except (httpx.HTTPError, httpx.StreamError) as exc:  # transport, decoding, redirects
            on_end(f"{where}: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}", None)
        except _ServerError as exc:
            on_end(f"{where}: the server reported an error mid-stream: {exc}", None)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            on_end(f"{where}: malformed stream: {type(exc).__name__}: {exc}", None)
        finally:
            with self._lock:
                self._open -= 1
            self._event.set()

    def _read_events(self, answer: Any, request_id: int, on_tokens: OnTokens) -> int | None:
        """Read the SSE stream to its end (OpenAI: ``[DONE]``; Triton: the server closing it);
        returns usage's completion_tokens, if sent. Raises _ServerError for an error object,
        ValueError for an OpenAI stream cut before ``[DONE]``."""
        usage = None
        triton = self.protocol == "triton-generate"
        for line in answer.iter_lines():
            if self._closing or request_id in self._cancelled:
                return usage
            if not line.startswith("data:"):
                continue  # SSE comments, event names, keep-alive blank lines
            data = line[len("data:") :].strip()
            if data == "[DONE]" and not triton:
                break
            chunk = json.loads(data)
            if chunk.get("error"):
                error = chunk["error"]
                raise _ServerError(str(error.get("message", error) if isinstance(error, dict)
                                       else error)[:200])  # fmt: skip
            if chunk.get("usage"):
                usage = int(chunk["usage"]["completion_tokens"])
            if triton:
                pieces = [chunk.get("text_output")]
            else:
                pieces = [choice.get("text") if self.protocol == "openai-completions" else (
                    choice.get("delta") or {}).get("content")
                    for choice in chunk.get("choices") or ()]  # fmt: skip
            for piece in pieces:
                if piece:
                    on_tokens((-1,))
                    self._event.set()
        else:
            if not triton:
                raise ValueError("the stream ended without data: [DONE]")
        return usage

    def pump(self, wait_s: float) -> None:
        self._event.wait(max(wait_s, 0.0))
        self._event.clear()

    def cancel(self, request_id: int) -> None:
        self._cancelled.add(request_id)

    def close_streams(self) -> None:
        """Drop queued requests and wait for open streams: each ends at its next chunk (every
        request counts as cancelled now) or at its read timeout, so this is bounded by
        ``timeout_s``; then close the connections."""
        if self._pool is not None:
            self._closing = True
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        if self._stream_client is not None:
            self._stream_client.close()
            self._stream_client = None
