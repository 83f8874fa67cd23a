"""The remote language model: streaming chat completions with tools, and no dead air.

`LlmAgent.respond(user_text)` is an async iterator of `LlmEvent`s:
- `text`: a streamed delta of the reply (feed it to the sentence chunker),
- `filler`: a short phrase to say now because the first token is late (never in the history),
- `tool`: a tool call (`transfer_to_human`, `end_call`, `send_dtmf`) with parsed arguments,
- `error`: the model failed twice; an apology `text` and a `transfer_to_human` tool follow it.

The first token has `llm.timeout_ms` to arrive; a timeout, an HTTP 5xx/429 or a network error
is retried once, then the agent apologises and hands off. While the caller waits, a filler is due
at `llm.first_token_filler_ms` and then every `FILLER_REPEAT_MS`, so the agent is never silent
for more than 3 s. The reply is kept in the history; after a barge-in the session replaces it
with what the caller actually heard (`truncate_last_reply`).
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal

from ..config import secret
from .config import LLMConfig

log = logging.getLogger(__name__)

FILLER_REPEAT_MS = 2500
FILLERS = ("One moment.", "Just a second, please.", "Still checking, thanks for waiting.")
APOLOGY = "I'm sorry, I'm having trouble on my side right now."

TOOLS: list[dict[str, Any]] = [
    {"type": "function", "function": {
        "name": "transfer_to_human",
        "description": "Hand the call to a human colleague: when the caller asks for a person, or you cannot help.",
        "parameters": {"type": "object", "properties": {
            "reason": {"type": "string", "description": "why the call is handed off"},
            "summary": {"type": "string", "description": "two-sentence summary of the call for the colleague"}},
            "required": ["reason", "summary"]}}},
    {"type": "function", "function": {
        "name": "end_call",
        "description": "End the call politely once the caller is done.",
        "parameters": {"type": "object", "properties": {"reason": {"type": "string"}}, "required": ["reason"]}}},
    {"type": "function", "function": {
        "name": "send_dtmf",
        "description": "Send touch-tone digits on the line (for example to navigate a phone menu).",
        "parameters": {"type": "object", "properties": {
            "digits": {"type": "string", "description": "0-9, *, #, A-D"}}, "required": ["digits"]}}},
]
TOOL_NAMES = {t["function"]["name"] for t in TOOLS}

PHONE_STYLE = ("You are speaking on a telephone call; your words are spoken aloud by a voice. Answer in one or two "
               "short sentences, no lists, no markdown, no emoji. Spell out numbers the way people say them.")


@dataclass
class LlmEvent:
    kind: Literal["text", "filler", "tool", "error"]
    text: str = ""
    name: str | None = None
    args: dict[str, Any] = field(default_factory=dict)


class LlmFailure(Exception):
    """One attempt failed (timeout, 5xx, network)."""


def _long_keepalive(openai):
    """The client's HTTP connections kept open 60 s instead of the default 5 s: a call's turns come
    seconds apart, and a new TLS connection to a remote endpoint costs 100-300 ms of first token.
    None (the library's default client) if this version of `openai` does not allow it."""
    try:
        from openai._base_client import DEFAULT_CONNECTION_LIMITS as d

        limits = type(d)(max_connections=d.max_connections, max_keepalive_connections=d.max_keepalive_connections,
                         keepalive_expiry=60.0)
        return openai.DefaultAsyncHttpxClient(limits=limits)
    except Exception as exc:  # noqa: BLE001 - only an optimisation
        log.debug("llm: default HTTP keep-alive (%s)", exc)
        return None


class LlmAgent:
    """One call's conversation with the model."""

    def __init__(self, cfg: LLMConfig, persona: str, *, client=None, tools: bool = True):
        self.cfg = cfg
        self.history: list[dict[str, Any]] = [{"role": "system", "content": f"{persona}\n{PHONE_STYLE}"}]
        self.tools = TOOLS if tools else None
        self._client = client
        self._own_client = client is None
        self.last_first_token_ms: float | None = None  # of the attempt that succeeded
        self.failures = 0

    def _get_client(self):
        if self._client is None:
            try:
                import openai
            except ImportError as exc:  # pragma: no cover - a declared dependency
                raise RuntimeError("the `openai` package is needed for llm: pip install openai") from exc
            self._client = openai.AsyncOpenAI(
                base_url=self.cfg.base_url, api_key=secret(self.cfg.api_key_env) or "not-needed",
                max_retries=0, timeout=self.cfg.timeout_ms / 1000.0 + 30.0, http_client=_long_keepalive(openai))
        return self._client

    def prepare(self) -> None:
        """Import the client library and build the client now (blocking, ~1 s cold): on a call's
        first turn that would stall the event loop, and eat into the first-token budget."""
        self._get_client()

    async def warm(self, timeout_s: float = 5.0) -> float | None:
        """Open the connection to the endpoint now (`GET /models`), while the greeting plays, so the
        caller's first turn does not pay for connecting, TLS and the client's first-request set-up.
        Returns the time it took (ms), or None when the endpoint did not answer (the first turn then
        connects as usual; a 404 still leaves the connection open)."""
        t0 = time.monotonic()
        try:
            await asyncio.wait_for(self._get_client().models.list(), timeout_s)
        except Exception as exc:  # noqa: BLE001 - a warm-up never fails the call
            log.debug("llm warm-up: %s", exc)
            import openai

            if not isinstance(exc, openai.APIStatusError):
                return None
        return (time.monotonic() - t0) * 1000.0

    async def aclose(self) -> None:
        if self._own_client and self._client is not None:
            try:
                await self._client.close()
            except Exception:  # noqa: BLE001 - closing must not fail the hang-up
                pass
            self._client = None

    def add_assistant(self, text: str) -> None:
        """Record something the agent said outside the model (greeting, handoff line)."""
        if text:
            self.history.append({"role": "assistant", "content": text})

    def truncate_last_reply(self, heard_text: str) -> None:
        """After a barge-in: keep in the history only what the caller actually heard."""
        text = (heard_text + " —").strip() if heard_text else "—"
        last_user = max((i for i, m in enumerate(self.history) if m["role"] == "user"), default=-1)
        for i in range(len(self.history) - 1, last_user, -1):
            if self.history[i]["role"] == "assistant":
                self.history[i]["content"] = text
                self.history[i].pop("tool_calls", None)
                break
        else:   # cut before the stream ended: the reply was never recorded
            self.history.append({"role": "assistant", "content": text})
        # tool results that belonged to the cut reply would now dangle
        self.history = [m for i, m in enumerate(self.history) if not (i > last_user and m["role"] == "tool")]

    async def respond(self, user_text: str) -> AsyncIterator[LlmEvent]:
        """Stream the reply to what the caller said."""
        self.history.append({"role": "user", "content": user_text})
        t0 = time.monotonic()
        fillers_said = 0
        next_filler = self.cfg.first_token_filler_ms / 1000.0
        for attempt in (1, 2):
            queue: asyncio.Queue = asyncio.Queue()
            attempt_t0 = time.monotonic()
            reader = asyncio.create_task(self._stream(queue), name="llm-stream")
            first = True
            text_parts: list[str] = []
            tool_calls: dict[int, dict[str, Any]] = {}
            try:
                while True:
                    if first:
                        budget = self.cfg.timeout_ms / 1000.0 - (time.monotonic() - attempt_t0)
                        wait = min(budget, next_filler - (time.monotonic() - t0))
                        if budget <= 0:
                            raise LlmFailure(f"no first token within {self.cfg.timeout_ms} ms")
                    else:
                        wait = self.cfg.timeout_ms / 1000.0
                    try:
                        item = await asyncio.wait_for(queue.get(), timeout=max(0.0, wait))
                    except asyncio.TimeoutError:
                        if first and time.monotonic() - t0 >= next_filler - 0.005:
                            yield LlmEvent("filler", FILLERS[min(fillers_said, len(FILLERS) - 1)])
                            fillers_said += 1
                            next_filler = (time.monotonic() - t0) + FILLER_REPEAT_MS / 1000.0
                            continue
                        if first:
                            continue  # budget check above raises
                        raise LlmFailure(f"stream stalled for {self.cfg.timeout_ms} ms") from None
                    if isinstance(item, BaseException):
                        raise LlmFailure(str(item) or type(item).__name__) from item
                    if item is None:
                        break
                    kind, value = item
                    if first:
                        first = False
                        self.last_first_token_ms = (time.monotonic() - attempt_t0) * 1000.0
                    if kind == "text":
                        text_parts.append(value)
                        yield LlmEvent("text", value)
                    else:
                        idx, delta = value
                        slot = tool_calls.setdefault(idx, {"id": "", "name": "", "arguments": ""})
                        slot["id"] = delta.get("id") or slot["id"]
                        slot["name"] += delta.get("name") or ""
                        slot["arguments"] += delta.get("arguments") or ""
            except LlmFailure as exc:
                self.failures += 1
                log.warning("LLM attempt %d failed: %s", attempt, exc)
                if text_parts or tool_calls:  # failed mid-reply: keep what was said, no retry
                    self._remember("".join(text_parts), [])
                    return
                if attempt == 2:
                    yield LlmEvent("error", str(exc))
                    yield LlmEvent("text", APOLOGY)
                    self.history.append({"role": "assistant", "content": APOLOGY})
                    yield LlmEvent("tool", name="transfer_to_human", args={
                        "reason": "the language model is not answering",
                        "summary": f"Last thing the caller said: {user_text[:200]}"})
                    return
                continue
            finally:
                reader.cancel()
                try:
                    await reader
                except (asyncio.CancelledError, Exception):  # noqa: BLE001
                    pass
            calls = [tool_calls[i] for i in sorted(tool_calls)]
            self._remember("".join(text_parts), calls)
            for call in calls:
                try:
                    args = json.loads(call["arguments"] or "{}")
                    if not isinstance(args, dict):
                        raise ValueError("arguments are not an object")
                except ValueError:
                    log.warning("LLM tool call %s with bad arguments %r", call["name"], call["arguments"])
                    args = {}
                if call["name"] not in TOOL_NAMES:
                    log.warning("LLM called an unknown tool %r; ignored", call["name"])
                    continue
                yield LlmEvent("tool", name=call["name"], args=args)
            return

    def _remember(self, text: str, calls: list[dict[str, Any]]) -> None:
        msg: dict[str, Any] = {"role": "assistant", "content": text or None}
        if calls:
            msg["tool_calls"] = [{"id": c["id"] or f"call_{i}", "type": "function",
                                  "function": {"name": c["name"], "arguments": c["arguments"] or "{}"}}
                                 for i, c in enumerate(calls)]
        if msg["content"] is None and not calls:
            return
        self.history.append(msg)
        for i, c in enumerate(calls):
            self.history.append({"role": "tool", "tool_call_id": c["id"] or f"call_{i}", "content": "done"})

    async def _stream(self, queue: asyncio.Queue) -> None:
        """Read one streamed completion into `queue`: ('text', s), ('tool', (i, delta)), None, or an error."""
        try:
            kwargs: dict[str, Any] = {"model": self.cfg.model, "messages": self.history, "stream": True,
                                      "temperature": self.cfg.temperature}
            if self.tools:
                kwargs["tools"] = self.tools
            stream = await self._get_client().chat.completions.create(**kwargs)
            async for chunk in stream:
                for choice in chunk.choices or ():
                    delta = choice.delta
                    if delta is None:
                        continue
                    if delta.content:
                        queue.put_nowait(("text", delta.content))
                    for tc in delta.tool_calls or ():
                        fn = tc.function
                        queue.put_nowait(("tool", (tc.index or 0, {
                            "id": tc.id, "name": fn.name if fn else None,
                            "arguments": fn.arguments if fn else None})))
            queue.put_nowait(None)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - any client/network error is one failed attempt
            queue.put_nowait(exc)
