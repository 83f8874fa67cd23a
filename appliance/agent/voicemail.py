"""Answering-machine detection on an answered outbound call, and the voicemail drop after it.

`VoicemailDrop(...).run(call)` reads the call's 20 ms frames into an `AmdDetector`, runs the STT
it asks for in the call's single worker thread (never per frame), and:
- on `human` or `unknown`: emits the `amd.result` event at once and returns it; the session
  carries on with the conversation (or its own policy for `unknown`);
- on `machine`: starts synthesizing the voicemail message straight away (in the worker), keeps
  listening until the greeting ends (the beep, or silence for machines without one), plays the
  message, waits for it to reach the line, hangs up, and emits `amd.result` with `beep_ms` and
  what was left.

The event payload is `{"call_id", "label", "decision_ms", "cause", "beep_ms", "greeting_end_ms",
"voicemail": {...} | None}` (times are audio ms from the answer).
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..audio import LINE_RATE
from ..detect.amd import AmdDetector, AmdResult
from ..detect.config import AmdConfig

log = logging.getLogger(__name__)

Emit = Callable[[str, dict], None]


def render_message(template: str, name: str | None) -> str:
    """The message with `{name}` filled in (left out gracefully when the name is unknown)."""
    if "{name}" in template:
        if name:
            return template.replace("{name}", name)
        return " ".join(template.replace("{name}", "").replace(" ,", ",").split()).replace("Hi ,", "Hi,")
    return template


class VoicemailDrop:
    """AMD plus voicemail drop for one outbound call.

    `tts`: an object with `synthesize_to_array(text, sample_rate) -> int16` (the speech area's
    `Tts`); `stt`: `fn(pcm_int16_8k) -> str` or None (timing and tones only); `emit(type, payload)`
    receives the `amd.result` event; `name`: the callee's name for the message."""

    def __init__(self, config: AmdConfig | None = None, *, tts=None, stt=None, emit: Emit | None = None,
                 name: str | None = None, executor: ThreadPoolExecutor | None = None, read_timeout_s: float = 5.0):
        self.config = config or AmdConfig()
        self.tts = tts
        self.stt = stt
        self.emit = emit
        self.name = name
        self._executor = executor
        self.read_timeout_s = read_timeout_s
        self.detector = AmdDetector(self.config if stt is not None else _no_transcript(self.config), LINE_RATE)

    async def run(self, call) -> dict:
        own = self._executor is None
        ex = self._executor or ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"amd-{call.call_id}")
        try:
            return await self._run(call, ex)
        finally:
            if own:
                ex.shutdown(wait=False, cancel_futures=True)

    async def _run(self, call, ex: ThreadPoolExecutor) -> dict:
        loop = asyncio.get_running_loop()
        det = self.detector
        stt_future: asyncio.Future | None = None
        tts_future: asyncio.Future | None = None
        result: AmdResult | None = None
        while True:
            try:
                frame = await call.read_frame(timeout=self.read_timeout_s)
            except TimeoutError:
                frame = None
            if frame is None:           # far end hung up (or the line went silent for good)
                return self._finish(call, result or AmdResult("unknown", det.t_ms, "call_ended"), None)
            text = None
            if stt_future is not None and stt_future.done():
                text = _result_or_empty(stt_future)
                stt_future = None
            r = det.feed(frame.samples, transcript=text)
            if self.stt is not None and stt_future is None and not det.decided:
                req = det.stt_request()
                if req is not None:
                    stt_future = loop.run_in_executor(ex, self.stt, req)
            if r is not None:
                result = r
                log.info("%s: AMD %s at %d ms (%s)", call.call_id, r.label, r.decision_ms, r.cause)
                if r.label != "machine":
                    return self._finish(call, r, None)
                if self.tts is not None and self.config.voicemail_message:
                    text_msg = render_message(self.config.voicemail_message, self.name)
                    tts_future = loop.run_in_executor(ex, self.tts.synthesize_to_array, text_msg, LINE_RATE)
            if result is not None and det.greeting_ended:
                break
        voicemail = await self._leave_message(call, tts_future)
        return self._finish(call, result, voicemail)

    async def _leave_message(self, call, tts_future) -> dict:
        det = self.detector
        info = {"left": False, "started_ms": None, "message_ms": 0, "reason": ""}
        if tts_future is None:
            info["reason"] = "no voicemail_message configured" if not self.config.voicemail_message else "no TTS"
        else:
            try:
                pcm = np.asarray(await tts_future, dtype=np.int16)
            except Exception as exc:  # a TTS failure must not leave the line open
                log.error("%s: voicemail TTS failed: %s", call.call_id, exc)
                pcm = None
                info["reason"] = f"tts failed: {exc}"
            if pcm is not None and len(pcm) and not call.ended.is_set():
                info["started_ms"] = det.t_ms
                call.play(pcm)
                info["message_ms"] = int(1000 * len(pcm) / LINE_RATE)
                # Keep consuming the far end's audio while the message plays out.
                while call.queued_playout_ms > 0 and not call.ended.is_set():
                    try:
                        f = await call.read_frame(timeout=self.read_timeout_s)
                    except TimeoutError:
                        f = None
                    if f is None:
                        break
                info["left"] = not call.ended.is_set() or call.queued_playout_ms <= 0
        if not call.ended.is_set():
            await call.hangup("voicemail_left" if info["left"] else "machine")
        return info

    def _finish(self, call, r: AmdResult, voicemail: dict | None) -> dict:
        det = self.detector
        payload = {"call_id": call.call_id, "label": r.label, "decision_ms": int(r.decision_ms), "cause": r.cause,
                   "beep_ms": det.beep_ms, "greeting_end_ms": det.greeting_end_ms, "voicemail": voicemail}
        if self.emit is not None:
            try:
                self.emit("amd.result", payload)
            except Exception:   # the event sink must not break the call
                log.exception("amd.result event sink failed")
        return payload


def _no_transcript(cfg: AmdConfig) -> AmdConfig:
    from dataclasses import replace
    return replace(cfg, use_transcript=False)


def _result_or_empty(fut) -> str:
    try:
        return fut.result() or ""
    except Exception as exc:   # a failed transcript only loses the word cues
        log.warning("AMD transcript failed: %s", exc)
        return ""
