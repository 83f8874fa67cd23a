"""One call, from answer to hang-up: listening, turn-taking, barge-in, speaking, handoff.

States: ringing -> answered -> greeting -> listening <-> thinking <-> speaking -> handoff | ended.
One asyncio task group per call:
- `_listen`: every 20 ms frame from the line: echo canceller (reference = what we played), VAD,
  echo gate, endpointer, speculative STT, barge-in, and the v2v clock;
- `_pace`: keeps a short lead of agent audio in the line's playout ring (`playout.Speaker`);
- `_converse`: greeting, then one reply per caller turn (LLM or call flow -> chunker -> TTS);
- `_watch`: line events (hang-up, DTMF) and the call time limit. Hang-up is urgent: it ends
  the task group at once, whatever is playing or being generated.

Barge-in: caller speech (VAD speech the echo gate attributes to the caller) lasting
`barge_in_pause_ms` pauses playout at once; if it lasts `barge_in_min_ms` the reply is cancelled
(LLM stream, TTS, queued audio) and the history keeps only what reached the line; if it stops
sooner (a backchannel, a cough) playout resumes where it stopped.

Speculative reply: when the caller pauses, the turn is decoded at once (ahead of the endpoint);
if that transcript arrives while the caller is still silent and looks complete, the LLM request
and the synthesis of the reply's first clause start at once, with the audio held back. When the
endpointer confirms the turn and its final transcript has the same words, that reply is the
answer (its first audio is ready or nearly so); if the caller goes on, or the words differ, the
speculative request is cancelled and the history rolled back (`spec_wasted` counts those).
`agent.speculate: false` turns speculative replies off (no LLM request is ever wasted). A decode
of a pause the caller then talks through is told to give up (`stt_abandoned`): the engine stops
between its encoder and its decoder, so the decode of the next pause does not queue behind it.

Reply audio: a clause found in the voice's phrase cache (the greeting, fillers, the handoff line,
the call flow's fixed lines and common openers, prewarmed; clauses of up to three words once said)
is played without synthesis (`Turn.tts_cached` says so for a reply's first clause).

Blocking work (STT decode, TTS synthesis) runs in two worker threads per call, so a synthesis
never delays the transcript of an interruption.
"""
from __future__ import annotations

import asyncio
import functools
import logging
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ..audio import SAMPLES_PER_FRAME
from ..errors import LineError
from . import engines, handoff
from .chunker import SentenceChunker
from .dialogue import FlowDialogue, LlmDialogue
from .llm import LlmEvent
from .playout import Speaker

log = logging.getLogger(__name__)

EmitFn = Callable[[str, dict], None]
FRAME_MS = 20.0
AUDIBLE = 64                 # |sample| above this on the line is agent audio (not codec noise)
SPECULATE_AFTER_MS = 100     # quiet after a burst over the agent before its transcript is looked at
SPECULATE_RAW_QUIET_MS = 60   # caller pause (undebounced VAD) after which the turn is decoded ahead of the endpoint
FALSE_BARGE_QUIET_MS = 240   # quiet after a short burst of caller speech: resume the agent
PRE_ROLL_FRAMES = 6          # audio kept before the caller's speech onset for STT (the VAD's onset delay)
BARGE_IN_SURE_MS = 1000      # caller speech this long over the agent is an interruption, whatever it says
SHORT_TEXT_WAIT_MS = 400     # how long the agent stays paused for a short burst's transcript
STT_FILLER = "Mm, one moment."  # said when the transcript of a turn is slow in coming
RESUME_PROMPT_S = 4.0        # after an interruption with no turn following, invite the caller to go on
SPEC_MIN_PAUSE_MS = 240      # a speculative reply starts only once the caller's pause is this long (a comma is shorter)
URGENT_AHEAD_MS = 600        # a clause is synthesized at once (urgent) when less of the reply than this is left to play
SHORT_CLAUSE_WORDS = 3       # a reply's clause this short is kept in the phrase cache once said
SPEC_RESUME_FRAMES = 3       # caller speech (undebounced) this many frames after a speculative start: drop it

_STOP_WORDS = {
    "wait", "stop", "no", "nope", "sorry", "hold", "hang", "excuse", "pardon", "actually", "but", "hey",
    "what", "question", "listen", "sec", "second", "moment", "minute", "can", "could", "how", "why", "when",
}


def asks_to_stop(text: str) -> bool:
    """Words that, even in a short burst, mean the caller wants the floor ("wait", "sorry, no")."""
    import re

    return any(w in _STOP_WORDS for w in re.findall(r"[a-z]+", text.lower()))


def _short(text: str) -> bool:
    """A clause short enough to keep in the phrase cache once said ("Of course,", "Got it.")."""
    return len(text.split()) <= SHORT_CLAUSE_WORDS


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower())


class _Spec:
    """A reply started ahead of the endpoint on a speculative transcript (see the module notes)."""

    def __init__(self, text: str, turn: Turn, mark: Any):
        self.text = text
        self.turn = turn
        self.mark = mark                          # the dialogue's state before the request (its `mark()`)
        self.t0 = time.monotonic()                # LLM request sent
        self.first_token_ms: float | None = None
        self.events: asyncio.Queue[tuple[float, LlmEvent] | None] = asyncio.Queue()
        self.audio: dict[str, asyncio.Future] = {}   # first clause -> its synthesis (held back)
        self.cancel = threading.Event()
        self.task: asyncio.Task | None = None
        self.resumed = 0                           # caller speech frames since it started
        self.cached: set[str] = set()              # clauses whose audio came from the phrase cache


class _CallOver(Exception):
    pass


class _CallerGaveUp(Exception):
    """The caller hung up before the session answered (a SIP CANCEL, a ring that stopped)."""


# line end causes that mean the far end hung up normally; any other (line-lost, modem-reset) is reported as is
_REMOTE_CAUSES = {None, "", "remote", "remote hangup", "hangup", "bye"}


@dataclass
class Turn:
    """One caller turn and the agent's answer, with the latency breakdown (ms)."""

    index: int
    speech_start_ms: float
    speech_end_ms: float = 0.0
    endpoint_at_ms: float = 0.0
    endpoint_reason: str = ""
    user_text: str = ""
    reply_text: str = ""
    heard_text: str = ""
    endpoint: float | None = None
    stt: float | None = None
    llm_first_token: float | None = None
    tts_first_audio: float | None = None
    v2v: float | None = None
    first_audio_ms: float | None = None
    filler: bool = False
    tts_cached: bool = False     # the reply's first clause came from the phrase cache (not in the event)
    interrupted: bool = False
    actions: list[str] = field(default_factory=list)

    def event(self) -> dict[str, Any]:
        r = lambda v: None if v is None else round(v, 1)  # noqa: E731
        return {"turn": self.index, "endpoint": r(self.endpoint), "stt": r(self.stt),
                "llm_first_token": r(self.llm_first_token), "tts_first_audio": r(self.tts_first_audio),
                "v2v": r(self.v2v), "text": self.user_text, "reply": self.heard_text if self.interrupted else self.reply_text,
                "interrupted": self.interrupted, "endpoint_reason": self.endpoint_reason, "filler": self.filler}


@dataclass
class BargeIn:
    onset_ms: float          # caller speech onset (audio time)
    paused_at_ms: float      # when playout was paused (audio time of the frame that decided it)
    speech_ms: float = 0.0   # caller speech in the burst, from its onset (the part before the pause included)
    quiet_ms: float = 0.0
    outcome: str = "pending"  # 'barge_in' | 'backchannel'
    during: str = "speaking"
    why: str = ""


class CallSession:
    """Runs one call. `await CallSession(call, cfg, emit=...).run()` returns when the call is over."""

    def __init__(self, call, cfg, *, emit: EmitFn | None = None, llm_client=None, record: bool | None = None,
                 on_transcript: Callable[[dict], None] | None = None):
        self.call = call
        self.cfg = cfg
        self.acfg = cfg.agent
        self._emit_cb = emit
        self.events: list[tuple[str, dict]] = []
        self.transcript: list[dict[str, Any]] = []
        self.turns: list[Turn] = []
        self.barge_ins: list[BargeIn] = []
        self.state = "ringing"
        self.timeline: dict[str, list] = {"vad": [], "caller": [], "states": []}
        self.end_reason: str | None = None
        self._on_transcript = on_transcript
        self._llm_client = llm_client
        self._record = cfg.recording.enabled if record is None else record
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stt_pool = ThreadPoolExecutor(1, thread_name_prefix=f"stt-{call.call_id}")
        self._tts_pool = ThreadPoolExecutor(1, thread_name_prefix=f"tts-{call.call_id}")
        self.speaker: Speaker | None = None
        self._reply_task: asyncio.Task | None = None
        self._tts_cancel: threading.Event | None = None
        self._turns: asyncio.Queue[Turn] = asyncio.Queue()
        self._closing = False
        self._recorder = None
        self.dialogue = None
        # listening state
        self._t_ms = 0.0
        self._caller_on = False
        self._caller_run_ms = 0.0
        self._quiet_ms = 0.0
        self._raw_quiet_ms = 0.0
        self._raw_run = 0                # frames of (undebounced) caller speech in a row
        self._undecoded_speech = False   # caller speech since the last speculative decode was asked for
        self._spec_stop: threading.Event | None = None   # set to make the running speculative decode give up
        self._vad_threshold = 0.5
        self._collecting = False
        self._turn: Turn | None = None
        self._speech_end_ms = 0.0
        self._last_vad_end_ms: float | None = None
        self._pending_stt: list[np.ndarray] = []
        self._preroll: deque[tuple[np.ndarray, bool]] = deque()
        self._stt_stream = None
        self._spec_job: asyncio.Future | None = None
        self._warm_task: asyncio.Task | None = None   # LlmAgent.warm, started with the call
        self._transcript_hint: str | None = None
        self._barge: BargeIn | None = None
        self._await_audio: Turn | None = None
        self._agent_entry: dict[str, Any] | None = None
        self._burst_text: str | None = None
        self._interrupted_last = False
        self._deferred_endpoint: float | None = None
        self.false_barge_ins = 0
        self._spec: _Spec | None = None
        self._spec_waiting: str | None = None   # a transcript waiting for the pause to reach SPEC_MIN_PAUSE_MS
        self._awaiting_turn = False
        self.spec_started = 0        # speculative replies started ahead of the endpoint
        self.spec_used = 0           # ... that became the answer
        self.spec_wasted = 0         # ... cancelled (the caller went on, or the final words differed)
        self.stt_abandoned = 0       # speculative decodes told to give up: the caller went on speaking
        self.starved_frames = 0      # playout pacing misses, summed over the call's replies
        self.tts_gap_ms = 0.0        # mid-reply waits for TTS, summed

    # ---- events -----------------------------------------------------------------------------
    def emit(self, type_: str, data: dict) -> None:
        data = {"call_id": self.call.call_id, **data}
        self.events.append((type_, data))
        if self._emit_cb is not None:
            try:
                self._emit_cb(type_, data)
            except Exception:  # noqa: BLE001 - a broken sink must not end the call
                log.exception("event sink failed on %s", type_)

    def _set_state(self, state: str) -> None:
        if state != self.state:
            self.state = state
            self.timeline["states"].append((round(self._t_ms, 1), state))

    def _say_line(self, role: str, text: str, **extra) -> None:
        entry = {"role": role, "text": text, "t_ms": round(self._t_ms, 1), **extra}
        self.transcript.append(entry)
        if self._on_transcript:
            self._on_transcript(entry)

    # ---- set-up -------------------------------------------------------------------------------
    async def _prepare(self) -> None:
        loop = self._loop
        cfg = self.cfg
        self.stt = await loop.run_in_executor(self._stt_pool, engines.get_stt, cfg.speech)
        self.tts = await loop.run_in_executor(self._tts_pool, engines.get_tts, cfg.speech)
        await loop.run_in_executor(self._stt_pool, engines.preload_semantic_endpointing, cfg.detect)
        # A fast VAD: onset after barge_in_pause_ms, a short hangover (the endpointer times pauses).
        self.vad = engines.make_vad(cfg.speech, min_speech_ms=min(cfg.speech.vad.min_speech_ms, self.acfg.barge_in_pause_ms),
                                    min_silence_ms=min(cfg.speech.vad.min_silence_ms, self.acfg.vad_hangover_ms))
        self._vad_threshold = cfg.speech.vad.threshold
        self.endpointer = engines.make_endpointer(cfg.detect)   # smart-turn runs on its own worker thread
        self.canceller, self.gate = engines.make_echo(cfg.detect)
        self._stt_stream = self.stt.stream()
        if cfg.llm is not None:
            from .llm import LlmAgent
            agent = LlmAgent(cfg.llm, self.acfg.persona, client=self._llm_client)
            await loop.run_in_executor(None, agent.prepare)
            self.dialogue = LlmDialogue(agent, self.acfg.greeting)
        else:
            flow = await loop.run_in_executor(None, engines.load_callflow, self.acfg.call_flow)
            self.dialogue = FlowDialogue(flow)
        # the greeting is known before the call is answered: have its audio ready
        self._greeting = self.dialogue.greeting()
        await loop.run_in_executor(self._tts_pool, self.tts.phrase, self._greeting, 8000)
        # the fixed lines and common opening clauses into the voice's phrase cache, once per
        # process, in the background (a no-op when done)
        loop.run_in_executor(None, engines.prewarm, self.tts, cfg, getattr(self.dialogue, "flow", None))
        if self._record:
            from .recording import CallRecorder
            self._recorder = CallRecorder(cfg.recording, self.call.call_id, {
                "call_id": self.call.call_id, "direction": self.call.direction, "remote": self.call.remote,
                "line": self.call.line.name, "started": time.time()})

    # ---- the call -----------------------------------------------------------------------------
    async def run(self) -> CallSession:
        self._loop = asyncio.get_running_loop()
        call = self.call
        self.emit("call.started", {"direction": call.direction, "remote": call.remote, "line": call.line.name})
        try:
            await self._prepare()
            agent = getattr(self.dialogue, "agent", None)
            if agent is not None:   # connect to the LLM endpoint while the greeting plays
                self._warm_task = asyncio.create_task(agent.warm(), name="llm-warm")
            if call.direction == "inbound" and call.answered_at is None:
                if call.ended.is_set():
                    raise _CallerGaveUp()
                try:
                    await call.answer()
                except LineError:
                    if call.ended.is_set():   # hung up (CANCEL) while we answered: not a failure
                        raise _CallerGaveUp() from None
                    raise
            self._set_state("answered")
            self.emit("call.answered", {"remote": call.remote})
            try:
                async with asyncio.TaskGroup() as tg:
                    tg.create_task(self._watch(), name="watch")
                    tg.create_task(self._listen(), name="listen")
                    tg.create_task(self._pace(), name="pace")
                    tg.create_task(self._converse(), name="converse")
            except* _CallOver:
                pass
        except* _CallerGaveUp:
            self.end_reason = "caller gave up"
            log.info("call %s: the caller hung up before it was answered (%s)", call.call_id, call.end_cause)
        except* Exception as group:
            for exc in group.exceptions:
                log.error("call %s failed: %s", call.call_id, exc, exc_info=exc)
                self.emit("error", {"where": "session", "error": f"{type(exc).__name__}: {exc}"})
            self.end_reason = self.end_reason or "error"
        finally:
            await self._cleanup()
        return self

    async def _cleanup(self) -> None:
        self._closing = True
        self._drop_spec("call over")
        if self.speaker is not None:
            self.speaker.stop()
        if self._tts_cancel is not None:
            self._tts_cancel.set()
        task = self._reply_task
        if task is not None:
            if self.turns and not any(e[0] == "turn" and e[1].get("turn") == self.turns[-1].index for e in self.events):
                self._emit_turn(self.turns[-1])
            if not task.done():
                task.cancel()
            try:
                await task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001 - the call is over either way
                pass
        if not self.call.ended.is_set():
            try:
                await self.call.hangup(self.end_reason or "local")
            except Exception as exc:  # noqa: BLE001
                log.warning("hang-up failed: %s", exc)
        self._set_state("ended")
        if self.dialogue is not None:
            await self.dialogue.aclose()
        self._stt_pool.shutdown(wait=False, cancel_futures=True)
        self._tts_pool.shutdown(wait=False, cancel_futures=True)
        cause = self.end_reason or self.call.end_cause or "ended"
        if self._recorder is not None:
            self._recorder.close(self.transcript, {"end_cause": cause, "turns": [t.event() for t in self.turns],
                                                   "barge_ins": [asdict(b) for b in self.barge_ins]})
        self.emit("call.ended", {"cause": cause, "duration_s": round(self._t_ms / 1000, 2), "turns": len(self.turns),
                                 "recording": str(self._recorder.wav_path) if self._recorder else None})

    async def _watch(self) -> None:
        deadline = time.monotonic() + self.acfg.max_call_s
        while True:
            try:
                ev = await asyncio.wait_for(self.call.events.get(), timeout=max(0.05, deadline - time.monotonic()))
            except TimeoutError:
                if time.monotonic() >= deadline:
                    self.end_reason = "max call time"
                    raise _CallOver() from None
                continue
            if ev.type == "hangup":
                if ev.data.get("cause") == "transferred":   # the line completed our transfer
                    self.end_reason = "transferred"
                cause = ev.data.get("cause") or self.call.end_cause
                if not self._closing and cause in _REMOTE_CAUSES:
                    cause = "remote hangup"
                self.end_reason = self.end_reason or cause
                if self.speaker is not None:
                    self.speaker.stop()   # urgent: nothing more goes to the line
                raise _CallOver()
            if ev.type == "dtmf":
                self.emit("dtmf", {"digit": ev.data.get("digit")})
            elif ev.type == "transfer":
                self.emit("transfer", dict(ev.data))

    async def _pace(self) -> None:
        while True:
            sp = self.speaker
            if sp is not None:
                sp.tick()
            await asyncio.sleep(0.01)

    # ---- listening ----------------------------------------------------------------------------
    async def _listen(self) -> None:
        call = self.call
        zeros = np.zeros(SAMPLES_PER_FRAME, dtype=np.int16)
        while True:
            frame = await call.read_frame()
            if frame is None:
                raise _CallOver()
            t = frame.timestamp_ms
            self._t_ms = t
            mic = frame.samples
            ref = call.read_reference()
            if ref is None:
                ref = zeros
            clean = self.canceller.process(mic, ref) if self.canceller is not None else mic
            self.gate.update(mic, clean, ref)
            for ev in self.vad.feed(clean):
                self.timeline["vad"].append((ev.kind, round(ev.t_ms, 1)))
                if ev.kind == "speech_end":
                    self._last_vad_end_ms = ev.t_ms
            caller = self.gate.speech_is_caller(self.vad.is_speech)
            # the endpointer times pauses itself: it gets the undebounced verdict (last window),
            # as it was tuned on (tools/bench_endpoint.py), not the VAD's hangover
            raw = self.gate.speech_is_caller(self.vad.probability >= self._vad_threshold)
            if self._recorder is not None:
                self._recorder.write(mic, ref)
            self._first_audio_check(ref, t)
            self._track_caller(caller, raw, t, clean)
            self._barge_in_step(caller, t)
            self._endpoint_step(clean, raw, t)

    def _first_audio_check(self, ref: np.ndarray, t: float) -> None:
        turn = self._await_audio
        if turn is None and self.state != "thinking":
            return
        loud = np.flatnonzero(np.abs(ref.astype(np.int32)) > AUDIBLE)
        if len(loud) and self.state == "thinking":
            self._set_state("speaking")   # the reply (or a filler) is on the line
        if turn is None:
            return
        if len(loud):
            turn.first_audio_ms = float(t + loud[0] / 8.0)
            turn.v2v = float(turn.first_audio_ms - turn.speech_end_ms)
            self._await_audio = None

    def _track_caller(self, caller: bool, raw: bool, t: float, clean: np.ndarray) -> None:
        self._raw_quiet_ms = 0.0 if raw else self._raw_quiet_ms + FRAME_MS
        self._raw_run = self._raw_run + 1 if raw else 0
        if (self._raw_run >= SPEC_RESUME_FRAMES and self._spec_stop is not None and self._barge is None
                and not self._spec_stop.is_set()):
            # the caller went on after the pause being decoded: that decode is stale; let it give
            # up, so the decode of the next pause does not queue behind it
            self._spec_stop.set()
            self.stt_abandoned += 1
        if self._spec_waiting is not None:
            if raw:
                self._spec_waiting = None
            elif self._raw_quiet_ms >= SPEC_MIN_PAUSE_MS:
                text, self._spec_waiting = self._spec_waiting, None
                self._maybe_speculate(text)
        spec = self._spec
        if spec is not None:
            spec.resumed = spec.resumed + 1 if raw else 0
            if spec.resumed >= SPEC_RESUME_FRAMES:
                self._drop_spec("the caller went on")
        if caller:
            if not self._caller_on:
                self._caller_on = True
                self.timeline["caller"].append([t, None])
                if not self._collecting:   # a new stretch of caller speech: keep its audio for STT
                    self._collecting = True
                    self._preroll = deque(((f, True) for f, _ in self._preroll), maxlen=PRE_ROLL_FRAMES)
            self._caller_run_ms += FRAME_MS
            self._quiet_ms = 0.0
            self._speech_end_ms = t + FRAME_MS
        else:
            if self._caller_on:
                self._caller_on = False
                self.timeline["caller"][-1][1] = t
            self._caller_run_ms = 0.0
            self._quiet_ms += FRAME_MS
        # STT input: caller audio (with pre-roll) while collecting, silence otherwise, so our own
        # echo never reaches the transcript.
        if self._preroll.maxlen is None:
            self._preroll = deque(maxlen=PRE_ROLL_FRAMES)
        if len(self._preroll) == self._preroll.maxlen:
            f, keep = self._preroll[0]
            self._pending_stt.append(f if keep else np.zeros_like(f))
        self._preroll.append((clean.copy(), self._collecting))
        if len(self._pending_stt) >= 10 and self._spec_job is None:   # hand audio over in 200 ms batches
            self._submit_stt(self._take_pending(), None)
        if (self._collecting and not self.endpointer.in_turn and self._quiet_ms >= 600 and self._barge is None):
            self._forget_burst()   # a click or a cough the endpointer did not take as a turn
        if raw and self._collecting:
            self._undecoded_speech = True
        if (self._collecting and self._undecoded_speech and self._raw_quiet_ms >= SPECULATE_RAW_QUIET_MS
                and self._spec_job is None):
            # the caller paused: decode now, so the transcript is ready when the endpointer decides
            # (if a decode of an earlier pause was still running, as soon as it is done)
            self._undecoded_speech = False
            self._spec_job = self._submit_stt(self._take_pending(flush=True), "partial")

    def _forget_burst(self) -> None:
        """Caller sound that was not a turn (backchannel, cough): keep it out of the next transcript."""
        self.endpointer.reset()
        self._drop_spec("not a turn")
        self._spec_waiting = None
        self._collecting = False
        self._turn = None
        self._spec_job = None
        self._transcript_hint = None
        self._take_pending(flush=True)
        stream = self._stt_stream
        self._loop.run_in_executor(self._stt_pool, stream.reset)

    def _take_pending(self, flush: bool = False) -> list[np.ndarray]:
        if flush:
            while self._preroll:
                f, keep = self._preroll.popleft()
                self._pending_stt.append(f if keep else np.zeros_like(f))
        out, self._pending_stt = self._pending_stt, []
        return out

    def _submit_stt(self, frames: list[np.ndarray], then: str | None) -> asyncio.Future:
        stream = self._stt_stream
        stop = None
        if then == "partial":
            stop = self._spec_stop = threading.Event()

        def job():
            t0 = time.perf_counter()
            for f in frames:
                stream.accept(f)
            t1 = time.perf_counter()
            decodes = getattr(stream, "decodes", 0)
            text = None
            if then == "partial":
                text = stream.partial(stop)
            elif then == "final":
                text = stream.finalize()
            if log.isEnabledFor(logging.DEBUG):
                log.debug("stt %s: %d frames accepted in %.0f ms, %s in %.0f ms (%d decodes so far): %r",
                          self.call.call_id, len(frames), (t1 - t0) * 1000, then, (time.perf_counter() - t1) * 1000,
                          decodes, text)
            return text

        fut = self._loop.run_in_executor(self._stt_pool, job)
        if then == "partial":
            owner = self._turn

            def done(f: asyncio.Future) -> None:
                if self._spec_job is f:
                    self._spec_job = None
                if self._spec_stop is stop:
                    self._spec_stop = None
                if f.cancelled() or f.exception() is not None:
                    return
                text = f.result() or ""
                if self._barge is not None:
                    self._burst_text = text
                # only for the turn it was decoded for: a transcript arriving after that turn ended
                # must not shape the next turn's endpoint ("...Sundays?" would end it after 300 ms)
                if text and owner is not None and self._turn is owner:
                    self._transcript_hint = text
                    self._maybe_speculate(text)
            fut.add_done_callback(done)
        return fut

    # ---- speculative reply ----------------------------------------------------------------------
    def _maybe_speculate(self, text: str) -> None:
        """A speculative transcript arrived: start the reply now if the caller is still silent, the
        turn looks complete and nothing else is going on (see the module notes)."""
        from ..detect.endpoint import classify_transcript

        if (self._closing or not self._awaiting_turn or self._turn is None or not self._collecting
                or self._barge is not None or self._agent_floor() is not None or self._reply_task is not None
                or not self._turns.empty() or not self.acfg.speculate or not getattr(self.dialogue, "can_speculate", False)
                or not self.endpointer.in_turn or self._raw_quiet_ms < SPECULATE_RAW_QUIET_MS):
            return
        if self._raw_quiet_ms < SPEC_MIN_PAUSE_MS:
            self._spec_waiting = text   # started by _track_caller if the pause lasts
            return
        self._spec_waiting = None
        if classify_transcript(text) in ("number", "spelling", "filler"):
            return   # the caller is likely to go on (and the endpointer waits long anyway)
        spec = self._spec
        if spec is not None:
            if spec.turn is self._turn and _words(spec.text) == _words(text):
                return
            self._drop_spec("a newer transcript")
        spec = self._spec = _Spec(text, self._turn, self.dialogue.mark())
        self.spec_started += 1
        log.debug("call %s: speculative reply started on %r after a %.0f ms pause", self.call.call_id, text,
                  self._raw_quiet_ms)
        spec.task = asyncio.create_task(self._speculate(spec), name="speculate")

    async def _speculate(self, spec: _Spec) -> None:
        """Run the LLM request into the spec's queue and synthesize the reply's first clause."""
        chunker = SentenceChunker()
        first_piece = False

        def hold(piece: str) -> None:
            spec.audio[piece] = self._loop.run_in_executor(self._tts_pool, self._synth_held, piece, spec)

        gen = self.dialogue.respond(spec.text)
        try:
            async for ev in gen:
                if ev.kind in ("text", "tool") and spec.first_token_ms is None:
                    spec.first_token_ms = (time.monotonic() - spec.t0) * 1000.0
                    log.debug("call %s: speculative reply: first token after %.0f ms", self.call.call_id,
                              spec.first_token_ms)
                spec.events.put_nowait((time.monotonic(), ev))
                if ev.kind == "text" and not first_piece:
                    for piece in chunker.push(ev.text):
                        first_piece = True
                        hold(piece)
                        break
            if not first_piece:
                for piece in chunker.flush():
                    hold(piece)
                    break
        finally:
            await gen.aclose()
            spec.events.put_nowait(None)

    def _synth_held(self, text: str, spec: _Spec) -> np.ndarray | None:
        """TTS worker: one clause into memory (None if the speculation was dropped meanwhile)."""
        cancel = spec.cancel
        parts: list[np.ndarray] = []

        def on_audio(pcm) -> bool:
            if cancel.is_set():
                return False
            parts.append(np.array(pcm, dtype=np.int16))
            return True

        if cancel.is_set():
            return None
        pcm = self.tts.cached(text, 8000)
        if pcm is not None:
            spec.cached.add(text)
            return pcm
        t0 = time.perf_counter()
        self.tts.synthesize(text, on_audio, 8000, keep=_short(text))
        if cancel.is_set():
            return None
        log.debug("call %s: held clause %r synthesized in %.0f ms", self.call.call_id, text,
                  (time.perf_counter() - t0) * 1000)
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int16)

    def _drop_spec(self, why: str) -> None:
        """Cancel the speculative reply (not adopted) and undo its history."""
        spec, self._spec = self._spec, None
        if spec is None:
            return
        spec.cancel.set()
        if spec.task is not None:
            spec.task.cancel()
        # the request's user message (and a finished reply) leave the history now: the cancelled
        # task writes nothing more (its stream is closed at its next await)
        self.dialogue.rollback(spec.mark)
        self.spec_wasted += 1
        log.debug("call %s: speculative reply to %r dropped: %s", self.call.call_id, spec.text, why)

    def _adopt_spec(self, turn: Turn, text: str) -> _Spec | None:
        """The turn's final transcript is in: the speculative reply if it answers these words."""
        spec = self._spec
        if spec is None:
            return None
        if spec.turn is not turn or _words(spec.text) != _words(text) or spec.cancel.is_set():
            self._drop_spec("the final transcript differs")
            return None
        self._spec = None
        self.spec_used += 1
        return spec

    async def _replay(self, spec: _Spec):
        """The speculative reply's events, as the dialogue gave them; a filler that fell due before
        the turn was confirmed is not said when the words are already there."""
        adopted_at = time.monotonic() if spec.first_token_ms is not None else 0.0
        try:
            while True:
                item = await spec.events.get()
                if item is None:
                    break
                t, ev = item
                if ev.kind == "filler" and t < adopted_at:
                    continue
                yield ev
        except BaseException:
            spec.cancel.set()
            if spec.task is not None and not spec.task.done():
                spec.task.cancel()
            raise

    def _agent_floor(self) -> str | None:
        """'speaking' while agent audio is playing or queued, 'thinking' while a reply is being made."""
        if self._closing:
            return None
        sp = self.speaker
        if sp is not None and sp.active and sp.started:
            return "speaking"
        task = self._reply_task
        if task is not None and not task.done() and not task.cancelling():
            return "thinking"
        return None

    def _barge_in_step(self, caller: bool, t: float) -> None:
        """Pause at once on caller speech over the agent; then decide: interruption or backchannel.

        Bursts under barge_in_min_ms are noise: resume. Speech lasting BARGE_IN_SURE_MS (as the
        VAD counts it, hangover included) is an interruption, whatever it says. A shorter burst
        ("mm-hm", "yeah", "okay") is a backchannel unless its transcript asks the agent to stop
        ("wait", "sorry, no"): Whisper turns hums into random words ("in the nature."), so a short
        burst is not judged by whether its words look like a backchannel. The agent stays paused
        while the burst lasts and at most SHORT_TEXT_WAIT_MS after it for the transcript."""
        floor = self._agent_floor()
        b = self._barge
        if b is None:
            if caller and floor is not None:
                b = self._barge = BargeIn(onset_ms=t - self.acfg.barge_in_pause_ms, paused_at_ms=t, during=floor,
                                          speech_ms=self.acfg.barge_in_pause_ms)
                self._burst_text = None
                if floor == "speaking":
                    self.speaker.pause()   # urgent: stop the agent's voice on this frame
            else:
                return
        if caller:
            b.speech_ms += FRAME_MS
            b.quiet_ms = 0.0
        else:
            b.quiet_ms += FRAME_MS
        if b.speech_ms >= BARGE_IN_SURE_MS:
            self._confirm(b, "long speech")
            return
        if caller:
            return
        if b.speech_ms < self.acfg.barge_in_min_ms:
            if b.quiet_ms >= FALSE_BARGE_QUIET_MS:
                self._resume_after(b, "noise")
            return
        if b.quiet_ms < SPECULATE_AFTER_MS:
            return
        text = self._burst_text
        if text is not None and asks_to_stop(text):
            self._confirm(b, f"short, but asks to stop: {text!r}")
        elif text is not None or b.quiet_ms >= SHORT_TEXT_WAIT_MS:
            self._resume_after(b, f"backchannel ({b.speech_ms:.0f} ms{', heard ' + repr(text) if text else ''})")

    def _confirm(self, b: BargeIn, why: str) -> None:
        b.outcome = "barge_in"
        b.why = why
        self._barge = None
        self.barge_ins.append(b)
        self._interrupt(b)
        if self._deferred_endpoint is not None:
            t, self._deferred_endpoint = self._deferred_endpoint, None
            self._end_turn(t)

    def _resume_after(self, b: BargeIn, why: str) -> None:
        b.outcome = "backchannel"
        b.why = why
        self._barge = None
        self._deferred_endpoint = None
        self.barge_ins.append(b)
        self.false_barge_ins += 1
        if self.speaker is not None:
            self.speaker.resume()
        self._forget_burst()
        self.emit("barge_in", {"outcome": "resumed", "onset_ms": round(b.onset_ms), "speech_ms": round(b.speech_ms),
                               "why": why})

    def _interrupt(self, b: BargeIn) -> None:
        """Confirmed barge-in: stop the reply and keep in the history only what was heard."""
        sp = self.speaker
        heard = sp.heard_text() if sp is not None else ""
        if sp is not None:
            sp.stop()
        if self._tts_cancel is not None:
            self._tts_cancel.set()
        task = self._reply_task
        if task is not None and not task.done():
            task.cancel()
        replying = task is not None and not task.done()
        # only a reply with words on the line changes the history (not a filler, not a reply that
        # had not started): the greeting or the current reply is cut to what was heard
        said = b.during == "speaking" and sp is not None and bool(sp.full_text)
        turn = self.turns[-1] if self.turns else None
        if turn is not None and said and replying:
            turn.interrupted = True
            turn.heard_text = heard
        if said and self.dialogue is not None:
            self.dialogue.heard(heard)
        entry = self._agent_entry
        if entry is not None and said:
            entry["heard"] = heard
            entry["interrupted"] = True
        self.emit("barge_in", {"outcome": "stopped", "onset_ms": round(b.onset_ms), "during": b.during,
                               "heard": heard, "stop_ms": round(b.paused_at_ms - b.onset_ms), "why": b.why})
        self._set_state("listening")

    def _endpoint_step(self, clean: np.ndarray, caller: bool, t: float) -> None:
        hint, self._transcript_hint = self._transcript_hint, None
        if self._turn is None and caller:
            self._turn = Turn(index=len(self.turns) + 1, speech_start_ms=t)
        if not self.endpointer.feed(clean, caller, t, hint):
            return
        if self._barge is not None:
            self._deferred_endpoint = t   # decided once we know whether it was an interruption
            return
        if self._agent_floor() is not None:
            self.endpointer.reset()       # the caller did not take the floor: not a turn
            return
        self._end_turn(t)

    def _end_turn(self, t: float) -> None:
        turn = self._turn or Turn(index=len(self.turns) + 1, speech_start_ms=t)
        self._turn = None
        decision = getattr(self.endpointer, "last_decision", None)
        turn.speech_end_ms = self._speech_end_ms
        if self._last_vad_end_ms is not None and turn.speech_start_ms <= self._last_vad_end_ms <= self._speech_end_ms:
            turn.speech_end_ms = self._last_vad_end_ms   # the VAD knows where speech really stopped
        turn.endpoint_at_ms = t + FRAME_MS
        turn.endpoint = turn.endpoint_at_ms - turn.speech_end_ms
        turn.endpoint_reason = getattr(decision, "reason", "") or ""
        self._collecting = False
        self._undecoded_speech = False
        self._spec_waiting = None
        self._spec_job = None   # the final decode reuses the speculative one when nothing new was said
        final = self._submit_stt(self._take_pending(flush=True), "final")
        turn._stt_future = final  # type: ignore[attr-defined]
        turn._stt_t0 = time.monotonic()  # type: ignore[attr-defined]
        self._turns.put_nowait(turn)

    # ---- talking ------------------------------------------------------------------------------
    async def _converse(self) -> None:
        self._set_state("greeting")
        await self._speak_text(self._greeting)
        self._set_state("listening")
        empty_in_a_row = 0
        while True:
            if self._interrupted_last:
                self._awaiting_turn = True
                try:
                    turn = await asyncio.wait_for(self._turns.get(), RESUME_PROMPT_S)
                except TimeoutError:
                    self._awaiting_turn = False
                    if self._collecting or self._barge is not None:
                        continue   # the caller is talking: wait for their turn
                    self._interrupted_last = False
                    self._drop_spec("resume prompt")
                    await self._speak_text("Sorry, please go ahead.")
                    continue
                finally:
                    self._awaiting_turn = False
            else:
                self._awaiting_turn = True
                try:
                    turn = await self._turns.get()
                finally:
                    self._awaiting_turn = False
            self._interrupted_last = False
            text = (await self._await_transcript(turn) or "").strip()
            turn.stt = (time.monotonic() - turn._stt_t0) * 1000.0  # type: ignore[attr-defined]
            spec = self._adopt_spec(turn, text) if text else None
            if spec is None:
                self._drop_spec("no transcript")
            if not text:
                empty_in_a_row += 1
                log.info("turn %d: empty transcript", turn.index)
                if empty_in_a_row < 3:
                    continue
                text = ""
            else:
                empty_in_a_row = 0
            turn.user_text = text
            self.turns.append(turn)
            self._say_line("caller", text, turn=turn.index)
            self._set_state("thinking")
            self._reply_task = asyncio.create_task(self._reply(turn, spec), name=f"reply-{turn.index}")
            await asyncio.wait({self._reply_task})
            task, self._reply_task = self._reply_task, None
            self._emit_turn(turn)
            if task.cancelled():
                self._interrupted_last = True
                continue      # barge-in: the next turn is being heard
            exc = task.exception()
            if exc is not None:
                raise exc
            if task.result() == "ended":
                raise _CallOver()
            if not self._closing:
                self._set_state("listening")

    async def _await_transcript(self, turn: Turn) -> str | None:
        """The turn's transcript; if it is slow in coming (a loaded box), say a short filler
        rather than leave the caller in silence (the LLM's own filler clock starts later)."""
        fut = turn._stt_future  # type: ignore[attr-defined]
        wait_s = (self.cfg.llm.first_token_filler_ms if self.cfg.llm is not None else 1500) / 1000.0
        try:
            return await asyncio.wait_for(asyncio.shield(fut), wait_s)
        except TimeoutError:
            pass
        turn.filler = True
        filler = asyncio.create_task(self._speak_filler(STT_FILLER), name="filler")
        try:
            text = await fut
        except BaseException:
            filler.cancel()
            await asyncio.wait({filler})
            raise
        await filler   # the answer follows the filler, it does not cut it
        return text

    async def _speak_filler(self, text: str) -> None:
        async def pieces():
            yield LlmEvent("filler", text)
        await self._speak(pieces(), None)

    def _emit_turn(self, turn: Turn) -> None:
        if self._await_audio is turn:
            self._await_audio = None
        ev = turn.event()
        log.info("turn %d: endpoint %s ms (%s), stt %s, llm first token %s, tts first audio %s, v2v %s",
                 turn.index, ev["endpoint"], turn.endpoint_reason, ev["stt"], ev["llm_first_token"],
                 ev["tts_first_audio"], ev["v2v"])
        self.emit("turn", ev)

    async def _speak_text(self, text: str) -> Speaker:
        """Say a fixed text (greeting, handoff line) and wait until it has played."""
        async def pieces():
            yield LlmEvent("text", text)
        sp, _ = await self._speak(pieces(), None, whole=True)
        return sp

    async def _reply(self, turn: Turn, spec: _Spec | None = None) -> str | None:
        """Answer one turn (or adopt its speculative reply); returns 'ended' when the call is over
        (handoff done, end_call)."""
        self._await_audio = turn
        if spec is not None:
            t0 = spec.t0
            turn.llm_first_token = spec.first_token_ms
            events = self._replay(spec)
        else:
            t0 = time.monotonic()
            events = self.dialogue.respond(turn.user_text)
        sp, actions = await self._speak(events, turn, t0, spec=spec)
        turn.reply_text = sp.full_text
        for name, args in actions:
            turn.actions.append(name)
            if name == "transfer_to_human":
                await self._handoff(args.get("reason") or "handoff", args.get("summary") or "")
                return "ended"
            elif name == "end_call":
                await self._end_call(args.get("reason") or "agent ended the call")
                return "ended"
            elif name == "send_dtmf":
                digits = str(args.get("digits", ""))
                try:
                    await self.call.send_dtmf(digits)
                    self.emit("dtmf.sent", {"digits": digits})
                except Exception as exc:  # noqa: BLE001 - a line without DTMF: say nothing, log
                    log.warning("send_dtmf(%r) failed: %s", digits, exc)

    async def _speak(self, events, turn: Turn | None, t0: float | None = None, whole: bool = False,
                     spec: _Spec | None = None):
        """Stream text events through the chunker and TTS to the line. Returns (speaker, actions).
        `whole`: the text is a fixed phrase, spoken in one piece from the phrase cache. `spec`: the
        adopted speculative reply, whose first clause is synthesized (or being synthesized)."""
        loop = self._loop
        sp = Speaker(self.call)
        self.speaker = sp
        cancel = threading.Event()
        self._tts_cancel = cancel
        pieces: asyncio.Queue[tuple[str, bool, bool] | None] = asyncio.Queue()
        chunker = SentenceChunker()
        actions: list[tuple[str, dict]] = []
        entry: dict[str, Any] | None = None

        def say(text: str, filler: bool = False, fixed: bool = False) -> None:
            nonlocal entry
            pieces.put_nowait((text, filler, fixed or filler))
            if filler:
                self._say_line("agent", text, filler=True)
                return
            if entry is None:
                self._say_line("agent", text, turn=turn.index if turn else None)
                entry = self.transcript[-1]
                self._agent_entry = entry
            else:
                entry["text"] += " " + text

        def set_tts_first(ms: float) -> None:
            if turn is not None and turn.tts_first_audio is None:
                turn.tts_first_audio = ms

        async def tts_worker():
            while True:
                item = await pieces.get()
                if item is None or cancel.is_set():
                    break
                text, filler, fixed = item
                sp.begin_piece(text, filler)
                piece_t0 = time.monotonic()
                # the piece's audio whole, if it is at hand: held by the speculative reply, a
                # fixed phrase, or in the voice's phrase cache
                pcm, cached = None, False
                ready = spec.audio.pop(text, None) if spec is not None else None
                if ready is not None:
                    pcm = await ready
                    cached = text in spec.cached
                elif fixed:
                    pcm = await loop.run_in_executor(self._tts_pool, self.tts.phrase, text, 8000)
                else:
                    pcm = self.tts.cached(text, 8000)
                    cached = pcm is not None
                if cancel.is_set():
                    break
                if pcm is not None:
                    if cached and turn is not None and turn.tts_first_audio is None:
                        turn.tts_cached = True
                    set_tts_first((time.monotonic() - piece_t0) * 1000.0)
                    sp.add_audio(pcm)
                    sp.end_piece()
                    continue
                first = [True]

                def on_audio(pcm, _t0=piece_t0, _first=first):
                    if cancel.is_set():
                        return False
                    if _first[0]:
                        _first[0] = False
                        if turn is not None and turn.tts_first_audio is None:
                            loop.call_soon_threadsafe(set_tts_first, (time.monotonic() - _t0) * 1000.0)
                    loop.call_soon_threadsafe(sp.add_audio, np.array(pcm, dtype=np.int16))
                    return True

                # urgent unless the line has enough of this reply to play meanwhile: later clauses
                # then wait their turn in the process (see Tts.synthesize)
                urgent = sp.ahead_ms < URGENT_AHEAD_MS
                await loop.run_in_executor(self._tts_pool, functools.partial(
                    self.tts.synthesize, text, on_audio, 8000, keep=_short(text), urgent=urgent))
                sp.end_piece()
            sp.finish()

        worker = asyncio.create_task(tts_worker(), name="tts")
        try:
            first = True
            async for ev in events:
                if ev.kind == "filler":
                    if turn is not None:
                        turn.filler = True
                    say(ev.text, filler=True)
                    continue
                if first and ev.kind in ("text", "tool") and turn is not None and t0 is not None:
                    first = False
                    if turn.llm_first_token is None:   # (a speculative reply's is known already)
                        turn.llm_first_token = (time.monotonic() - t0) * 1000.0
                if ev.kind == "text" and whole:
                    say(ev.text, fixed=True)
                elif ev.kind == "text":
                    for piece in chunker.push(ev.text):
                        say(piece)
                elif ev.kind == "tool":
                    actions.append((ev.name, ev.args))
                elif ev.kind == "error":
                    self.emit("error", {"where": "llm", "error": ev.text})
            for piece in chunker.flush():
                say(piece)
            pieces.put_nowait(None)
            await worker
            await sp.done.wait()
            self.starved_frames += sp.starved_frames
            self.tts_gap_ms += sp.tts_gap_ms
        except asyncio.CancelledError:
            cancel.set()
            sp.stop()
            worker.cancel()
            aclose = getattr(events, "aclose", None)
            if aclose is not None:
                try:
                    await aclose()
                except Exception:  # noqa: BLE001
                    pass
            raise
        return sp, actions

    async def _handoff(self, reason: str, summary: str) -> None:
        self._closing = True
        self._set_state("handoff")
        sp = self.speaker
        if sp is None or not sp.full_text.strip():
            await self._speak_text(self.acfg.handoff_line)
        summary = summary or (self.dialogue.summary() if self.dialogue else None) or handoff.summarize(self.transcript)
        plan = handoff.plan(self.call, self.acfg.handoff_target, reason, summary)
        self.emit("handoff", handoff.event_data(self.call, plan, self.transcript))
        self.end_reason = "handoff"
        ok = await handoff.transfer(self.call, plan)
        if ok:
            self.end_reason = "transferred"
            return
        await self._speak_text(handoff.NO_TARGET_LINE if plan.mode == "none" else handoff.FAILED_LINE)
        await asyncio.sleep(0.3)

    async def _end_call(self, reason: str) -> None:
        self._closing = True
        self.end_reason = reason
        await asyncio.sleep(0.3)   # let the goodbye's last frame leave the line
