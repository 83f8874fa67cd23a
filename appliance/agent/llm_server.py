"""A local OpenAI-compatible chat-completions server for tests and benchmarks.

It speaks enough of the API for the `openai` client: `POST /v1/chat/completions` with or without
`stream: true` (server-sent events, text deltas and streamed tool calls), `GET /v1/models`.
Timing is configurable: `ttft_ms` (time to first token) and `tokens_per_s`. Replies come from a
script (a list consumed one per request) or, when the script is empty, from a small rule-based
responder (asking for a person gives a `transfer_to_human` tool call; saying goodbye gives
`end_call`). A scripted reply may also fail on purpose: `{"status": 500}` or `{"hang": True}`
(never answers: the client's timeout must fire).

Every request's messages are kept in `requests`, so tests can check the history the agent sent
(for example the truncated assistant message after a barge-in).

    server = LlmServer(ttft_ms=300, tokens_per_s=40).start()   # binds 127.0.0.1:0
    ... base_url = server.base_url ...
    server.stop()

Also runnable by hand: `python -m appliance.agent.llm_server --port 8081 --ttft-ms 400`.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import re
import threading
import time
import uuid
from collections import deque
from typing import Any

Reply = dict[str, Any]  # {"text": str} | {"tool": name, "args": {...}, "text": str?} | {"status": int} | {"hang": True}


def _tokenize(text: str) -> list[str]:
    """Roughly what a BPE tokenizer streams: words with their leading space, punctuation apart."""
    return re.findall(r"\s*[\w']+|\s*[^\w\s]|\s+", text)


def rule_reply(messages: list[dict]) -> Reply:
    """The default responder: short, deterministic, plausible receptionist replies."""
    user = ""
    for m in reversed(messages):
        if m.get("role") == "user":
            user = str(m.get("content") or "")
            break
    low = user.lower()
    if re.search(r"\b(person|human|someone|somebody|operator|colleague|representative|agent)\b", low):
        return {"text": "Of course, let me put you through to a colleague.", "tool": "transfer_to_human",
                "args": {"reason": "caller asked for a person", "summary": f"Caller said: {user[:200]}"}}
    if re.search(r"\b(bye|goodbye|that's all|that is all)\b", low):
        return {"text": "Thanks for calling, goodbye.", "tool": "end_call", "args": {"reason": "caller said goodbye"}}
    name = re.search(r"\bname is ([a-z]+(?: [a-z]+)?)", low)
    if name:
        return {"text": f"Thanks, {name.group(1).title()}. Which day would suit you?"}
    if re.search(r"\b(book|appointment|visit)\b", low):
        if re.search(r"\b(monday|tuesday|wednesday|thursday|friday|saturday)\b", low):
            return {"text": "Yes, that works. We have free slots at nine, ten and eleven in the morning. Which time "
                            "would you like, and can I have your name for the booking?"}
        return {"text": "Sure, I can book that for you. Can I have your name, please?"}
    if re.search(r"\bsundays?\b", low):
        return {"text": "We're closed on Sundays, but we're open on Saturday mornings from nine to twelve."}
    if not low.strip():
        return {"text": "Sorry, I didn't catch that. Could you say it again?"}
    return {"text": "Thanks, I can help with that. We are open from nine to five, Monday to Saturday, "
                    "and you can book a visit any day. Would you like me to book one for you?"}


class LlmServer:
    """The server, run on its own event loop in a daemon thread."""

    def __init__(self, ttft_ms: float = 300.0, tokens_per_s: float = 40.0,
                 script: list[Reply] | None = None, host: str = "127.0.0.1", port: int = 0):
        self.ttft_ms = ttft_ms
        self.tokens_per_s = tokens_per_s
        self.script: deque[Reply] = deque(script or [])
        self.requests: list[dict] = []
        self.connections = 0        # TCP connections accepted (the client keeps them alive)
        self.model_lists = 0        # GET /models requests
        self.host = host
        self.port = port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.AbstractServer | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._lock = threading.Lock()
        self._error: BaseException | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def push(self, *replies: Reply) -> None:
        """Queue scripted replies (one per request, in order)."""
        with self._lock:
            self.script.extend(replies)

    # ---- lifecycle ------------------------------------------------------------------
    def start(self) -> LlmServer:
        self._thread = threading.Thread(target=self._run, name="llm-server", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("local LLM server did not start")
        if self._error:
            raise RuntimeError(f"local LLM server failed: {self._error}")
        return self

    def stop(self) -> None:
        loop = self._loop
        if loop and loop.is_running():
            loop.call_soon_threadsafe(loop.stop)
        if self._thread:
            self._thread.join(5)

    def __enter__(self) -> LlmServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            self._server = loop.run_until_complete(asyncio.start_server(self._handle, self.host, self.port))
            self.port = self._server.sockets[0].getsockname()[1]
        except OSError as exc:
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            self._server.close()
            for task in asyncio.all_tasks(loop):
                task.cancel()
            loop.run_until_complete(asyncio.sleep(0))
            loop.close()

    # ---- HTTP -----------------------------------------------------------------------
    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:  # keep-alive: the openai client reuses connections
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers = {k.strip().lower(): v.strip() for k, v in
                           (ln.split(":", 1) for ln in lines[1:] if ":" in ln)}
                body = await reader.readexactly(int(headers.get("content-length", "0") or 0))
                if method == "GET" and path.rstrip("/").endswith("/models"):
                    self.model_lists += 1
                    await self._send_json(writer, 200, {"object": "list", "data": [
                        {"id": "local-test", "object": "model", "created": 0, "owned_by": "local"}]})
                elif method == "POST" and path.rstrip("/").endswith("/chat/completions"):
                    try:
                        req = json.loads(body or b"{}")
                    except ValueError:
                        await self._send_json(writer, 400, {"error": {"message": "body is not JSON"}})
                        continue
                    await self._chat(req, writer)
                else:
                    await self._send_json(writer, 404, {"error": {"message": f"no route {method} {path}"}})
                if headers.get("connection", "").lower() == "close":
                    break
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError, ValueError):
            pass
        except asyncio.CancelledError:
            # the server is stopping with a kept-alive connection open: end quietly (a handler
            # task that ends cancelled makes asyncio's streams log an error on 3.11)
            pass
        finally:
            writer.close()

    async def _send_json(self, writer, status: int, obj) -> None:
        data = json.dumps(obj).encode()
        writer.write(f"HTTP/1.1 {status} {'OK' if status == 200 else 'Error'}\r\n"
                     f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n".encode() + data)
        await writer.drain()

    async def _chat(self, req: dict, writer) -> None:
        messages = req.get("messages") or []
        with self._lock:
            self.requests.append({"messages": messages, "tools": req.get("tools"), "at": time.time()})
            scripted = bool(self.script)
            reply = self.script.popleft() if scripted else rule_reply(messages)
        if reply.get("hang"):
            await asyncio.sleep(3600)
            return
        if reply.get("status"):
            await asyncio.sleep(reply.get("delay_ms", 0) / 1000)
            await self._send_json(writer, int(reply["status"]), {"error": {"message": "scripted failure"}})
            return
        ttft = reply.get("ttft_ms", self.ttft_ms) / 1000.0
        rate = float(reply.get("tokens_per_s", self.tokens_per_s))
        text = reply.get("text", "")
        cid = f"chatcmpl-{uuid.uuid4().hex[:12]}"
        model = req.get("model", "local-test")
        tool = reply.get("tool")
        if not req.get("stream"):
            await asyncio.sleep(ttft + len(_tokenize(text)) / rate)
            msg: dict[str, Any] = {"role": "assistant", "content": text or None}
            if tool:
                msg["tool_calls"] = [{"id": "call_1", "type": "function",
                                      "function": {"name": tool, "arguments": json.dumps(reply.get("args", {}))}}]
            await self._send_json(writer, 200, {
                "id": cid, "object": "chat.completion", "created": int(time.time()), "model": model,
                "choices": [{"index": 0, "message": msg, "finish_reason": "tool_calls" if tool else "stop"}]})
            return

        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n")

        async def send(delta: dict, finish: str | None = None) -> None:
            chunk = {"id": cid, "object": "chat.completion.chunk", "created": int(time.time()), "model": model,
                     "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
            await self._chunk(writer, f"data: {json.dumps(chunk)}\n\n".encode())

        start = time.monotonic()
        sent = False
        try:
            await self._stream_reply(writer, send, start, ttft, rate, text, tool, reply)
            sent = True
        finally:
            if not sent and scripted:
                # the client gave up before the reply was complete (a speculative request the
                # agent cancelled): the scripted reply is for the next request
                with self._lock:
                    self.script.appendleft(reply)

    async def _stream_reply(self, writer, send, start, ttft, rate, text, tool, reply) -> None:
        await asyncio.sleep(ttft)
        await send({"role": "assistant", "content": ""})
        n = 0
        for tok in _tokenize(text):
            n += 1
            due = start + ttft + n / rate
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            await send({"content": tok})
        if tool:
            args = json.dumps(reply.get("args", {}))
            await send({"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                                        "function": {"name": tool, "arguments": ""}}]})
            for i in range(0, len(args), 16):
                await send({"tool_calls": [{"index": 0, "function": {"arguments": args[i:i + 16]}}]})
        await send({}, "tool_calls" if tool else "stop")
        await self._chunk(writer, b"data: [DONE]\n\n")
        await self._chunk(writer, b"")

    @staticmethod
    async def _chunk(writer, data: bytes) -> None:
        writer.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        await writer.drain()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--ttft-ms", type=float, default=300)
    ap.add_argument("--tokens-per-s", type=float, default=40)
    a = ap.parse_args(argv)
    server = LlmServer(a.ttft_ms, a.tokens_per_s, port=a.port).start()
    print(f"serving on {server.base_url}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.stop()
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
