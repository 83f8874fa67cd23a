"""The simulated line: a scripted caller on a G.711 line with echo and noise, on a real-time clock.

A clock thread ticks every 20 ms, as a line device would. Each tick it
1. takes one frame of agent audio (`call.next_playout_frame()`, which also records the echo
   reference), passes it through G.711 as the caller hears it;
2. builds what the agent hears: the caller's voice (synthesized by TTS ahead of time), the agent's
   own voice returned by the echo path (`echo_db`, `echo_delay_ms`), noise (`noise_dbfs`), all
   through G.711 encode/decode, written to `call.rx`;
3. advances the caller script.

Caller script: a list of steps (YAML or dicts), each `{say: TEXT}` or `{hangup: true}` with
- `when`: `agent_done` (default: the agent spoke and then was quiet for `gap_ms`, default 600),
  `agent_speaking` (the agent's current reply has been playing for `after_ms`: an interruption or
  a backchannel), or `now` (`gap_ms` after the previous step);
- `timeout_ms` (default 12000): act anyway when the condition never comes;
- `label` (answer, interrupt, backchannel, ...) for reports.

The line records everything a test or the demo needs: the caller's utterances with line times,
the agent's speech segments, how quickly agent audio stopped after each utterance that started
while the agent was talking (`barge_in_stops`), transfers, both channels of audio.
"""
from __future__ import annotations

import asyncio
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..audio import SAMPLES_PER_FRAME, decode, encode, energy_dbfs
from ..errors import ConfigError, LineError
from .base import Call, Line, LineCapabilities, LineEvent
from .sim_config import SimLineConfig

log = logging.getLogger(__name__)
FRAME_MS = 20
AGENT_ACTIVE_DBFS = -45.0    # a line frame louder than this is agent speech
STOP_QUIET_FRAMES = 6        # 120 ms of quiet: the agent stopped (shorter gaps are between words)

# The built-in caller (appliance demo): answers, a backchannel, a mid-sentence interruption,
# and a request for a person. It matches the built-in call flow and the default LLM replies.
DEMO_SCRIPT: list[dict[str, Any]] = [
    {"say": "Hi, I'd like to book an appointment, please.", "gap_ms": 1300, "label": "answer"},
    {"say": "My name is Alex Carter.", "gap_ms": 1300, "label": "answer"},
    {"say": "What are your opening hours?", "gap_ms": 1300, "label": "answer"},
    {"say": "Mm-hm.", "when": "agent_speaking", "after_ms": 1500, "label": "backchannel"},
    {"say": "Sorry, are you open on Sundays?", "when": "agent_speaking", "after_ms": 4000, "label": "interrupt"},
    {"say": "Okay. Can I talk to a real person, please?", "gap_ms": 1300, "label": "request a person"},
    {"hangup": True, "when": "agent_done", "gap_ms": 2500, "timeout_ms": 8000, "label": "hang up"},
]


@dataclass
class ScriptStep:
    say: str | None = None
    hangup: bool = False
    when: str = "agent_done"
    gap_ms: float = 600.0
    after_ms: float = 1000.0
    timeout_ms: float = 12000.0
    label: str = "answer"

    @classmethod
    def parse(cls, raw: dict, where: str) -> ScriptStep:
        if not isinstance(raw, dict):
            raise ConfigError([f"{where}: got {raw!r}, expected a mapping with say: or hangup:"], "caller script")
        unknown = set(raw) - {"say", "hangup", "when", "gap_ms", "after_ms", "timeout_ms", "label"}
        problems = [f"{where}: unknown key {k!r}" for k in sorted(unknown)]
        if not raw.get("say") and not raw.get("hangup"):
            problems.append(f"{where}: needs `say: TEXT` or `hangup: true`")
        if raw.get("when", "agent_done") not in ("agent_done", "agent_speaking", "now"):
            problems.append(f"{where}.when: got {raw.get('when')!r}, expected agent_done, agent_speaking or now")
        if problems:
            raise ConfigError(problems, "caller script")
        return cls(**raw)


def load_script(path: str | Path | None) -> list[ScriptStep]:
    """A caller script from YAML (a list of steps), or the built-in demo caller."""
    if path is None:
        data: Any = DEMO_SCRIPT
    else:
        import yaml

        try:
            data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError([f"cannot read the caller script: {exc}"], str(path)) from exc
        if isinstance(data, dict):
            data = data.get("steps")
        if not isinstance(data, list) or not data:
            raise ConfigError(["expected a list of steps (or a mapping with `steps:`)"], str(path))
    return [ScriptStep.parse(s, f"steps[{i}]") for i, s in enumerate(data)]


@dataclass
class Utterance:
    label: str
    text: str
    start_ms: float
    end_ms: float | None = None
    agent_active_at_start: bool = False
    agent_stopped_ms: float | None = None  # line time agent audio stopped after this utterance began


@dataclass
class SimRecord:
    """What happened on the simulated line."""

    utterances: list[Utterance] = field(default_factory=list)
    agent_segments: list[list[float]] = field(default_factory=list)  # [start_ms, end_ms]
    transfers: list[dict[str, Any]] = field(default_factory=list)
    dtmf_sent: list[str] = field(default_factory=list)
    caller_audio: list[np.ndarray] = field(default_factory=list)  # what the agent received (rx)
    agent_audio: list[np.ndarray] = field(default_factory=list)   # what the agent sent (line)
    clock_slips: int = 0
    hangup_by: str | None = None

    def barge_in_stops(self) -> list[dict[str, Any]]:
        """Utterances that began while the agent was talking, and how fast it went quiet."""
        out = []
        for u in self.utterances:
            if u.agent_active_at_start:
                stop = None if u.agent_stopped_ms is None else u.agent_stopped_ms - u.start_ms
                out.append({"label": u.label, "text": u.text, "start_ms": u.start_ms, "stop_ms": stop})
        return out

    def stereo(self) -> np.ndarray:
        """(n, 2) int16: caller (as received), agent (as sent)."""
        if not self.caller_audio:
            return np.zeros((0, 2), np.int16)
        return np.stack([np.concatenate(self.caller_audio), np.concatenate(self.agent_audio)], axis=1)


class _CallerVoice:
    """Synthesizes the script's utterances once (through G.711 later, per frame)."""

    def __init__(self, tts, steps: list[ScriptStep]):
        self.audio: dict[str, np.ndarray] = {}
        for s in steps:
            if s.say and s.say not in self.audio:
                pcm = np.asarray(tts.synthesize_to_array(s.say, sample_rate=8000), dtype=np.int16)
                self.audio[s.say] = _trim_silence(pcm)


def _trim_silence(pcm: np.ndarray, threshold: int = 300) -> np.ndarray:
    """Cut TTS lead-in/out silence so utterance times are speech times."""
    loud = np.flatnonzero(np.abs(pcm.astype(np.int32)) > threshold)
    if len(loud) == 0:
        return pcm
    return pcm[max(0, loud[0] - 80): loud[-1] + 160]


class SimCall(Call):
    def __init__(self, line: SimLine, direction, remote: str):
        super().__init__(line, direction, remote)
        self.sim: SimLine = line
        self.record = SimRecord()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    async def answer(self) -> None:
        if self.answered_at is not None:
            return
        self.answered_at = time.time()
        self.events.put_nowait(LineEvent("answered", {}, self.call_id))
        self.line.set_state("in_call")
        self._thread = threading.Thread(target=self.sim._clock, args=(self,), name=f"sim-clock-{self.call_id}",
                                        daemon=True)
        self._thread.start()

    async def hangup(self, cause: str = "local") -> None:
        if self.record.hangup_by is None and not self.ended.is_set():
            self.record.hangup_by = "agent"
        self._stop.set()
        self.mark_ended(cause)
        await self._join()

    async def _join(self) -> None:
        t = self._thread
        if t is not None and t is not threading.current_thread():
            await asyncio.get_running_loop().run_in_executor(None, t.join, 2.0)
        self.line.set_state("idle")

    async def send_dtmf(self, digits: str) -> None:
        self.record.dtmf_sent.append(digits)

    async def transfer(self, target: str, mode="blind", briefing: str | None = None) -> bool:
        self.record.transfers.append({"target": target, "mode": mode, "briefing": briefing,
                                      "at_ms": self.sent_frames * FRAME_MS})
        self.events.put_nowait(LineEvent("transfer", {"target": target, "mode": mode, "status": "ok",
                                                      "detail": "simulated"}, self.call_id))
        self.record.hangup_by = self.record.hangup_by or "transfer"
        self._stop.set()
        self.mark_ended("transferred")
        await self._join()
        return True

    def _end_from_line(self, cause: str) -> None:
        """Clock thread: the caller hung up."""
        self.record.hangup_by = self.record.hangup_by or "caller"
        self._stop.set()
        try:
            self._loop.call_soon_threadsafe(self.mark_ended, cause)
        except RuntimeError:
            pass


class SimLine(Line):
    """A line with one scripted caller. `place_call()` rings it in; `dial()` calls the script."""

    capabilities = LineCapabilities(full_duplex=True, caller_id=True, dtmf_in=False, dtmf_out=True,
                                    transfer_blind=True, transfer_warm=True, outbound=True)

    def __init__(self, cfg: SimLineConfig | None = None, *, tts=None, script=None, caller_id: str = "+15550100",
                 auto_call: bool = False, ring_delay_s: float = 0.2, max_call_s: float = 300.0, seed: int = 1):
        cfg = cfg or SimLineConfig()
        super().__init__(cfg.name)
        self.cfg = cfg
        if script is None:
            self.steps = load_script(cfg.script)
        elif isinstance(script, (str, Path)):
            self.steps = load_script(script)
        else:
            self.steps = [s if isinstance(s, ScriptStep) else ScriptStep.parse(s, f"steps[{i}]")
                          for i, s in enumerate(script)]
        self._tts = tts
        self.caller_id = caller_id
        self.auto_call = auto_call
        self.ring_delay_s = ring_delay_s
        self.max_call_s = max_call_s
        self._rng = np.random.default_rng(seed)
        self._voice: _CallerVoice | None = None
        self.calls: list[SimCall] = []
        self._ring_task: asyncio.Task | None = None

    async def start(self) -> None:
        if self._tts is None:
            from ..agent.engines import get_tts
            from ..speech.config import SpeechConfig
            self._tts = get_tts(SpeechConfig())
        loop = asyncio.get_running_loop()
        try:
            self._voice = await loop.run_in_executor(None, _CallerVoice, self._tts, self.steps)
        except Exception as exc:  # noqa: BLE001
            raise LineError(f"sim line {self.name}: cannot synthesize the caller's voice: {exc}") from exc
        self.set_state("idle")
        if self.auto_call:
            self._ring_task = asyncio.create_task(self._ring_later())

    async def _ring_later(self) -> None:
        await asyncio.sleep(self.ring_delay_s)
        self.place_call()

    def place_call(self) -> SimCall:
        """The scripted caller rings the box."""
        if self._voice is None:
            raise LineError(f"sim line {self.name}: start() it first")
        call = SimCall(self, "inbound", self.caller_id)
        self.calls.append(call)
        self.set_state("ringing")
        self.emit(LineEvent("ring", {"caller_id": self.caller_id, "call": call}, call.call_id))
        return call

    async def stop(self) -> None:
        if self._ring_task:
            self._ring_task.cancel()
        for call in self.calls:
            if not call.ended.is_set():
                await call.hangup("line stopped")
        self.set_state("down")

    async def dial(self, number: str, timeout_s: float = 60.0) -> SimCall:
        if self._voice is None:
            raise LineError(f"sim line {self.name}: start() it first")
        call = SimCall(self, "outbound", number)
        self.calls.append(call)
        await asyncio.sleep(self.ring_delay_s)
        await call.answer()
        return call

    # ---- the clock thread --------------------------------------------------------------------
    def _clock(self, call: SimCall) -> None:
        try:
            self._run_clock(call)
        except Exception:  # pragma: no cover - a crash here must end the call, not hang it
            log.exception("sim line clock failed")
            call._end_from_line("line error")

    def _run_clock(self, call: SimCall) -> None:
        cfg = self.cfg
        rec = call.record
        echo_gain = 10.0 ** (cfg.echo_db / 20.0)
        noise_rms = 32768.0 * 10.0 ** (cfg.noise_dbfs / 20.0)
        delay_frames = max(0, round(cfg.echo_delay_ms / FRAME_MS))
        echo_line = [np.zeros(SAMPLES_PER_FRAME, np.float64) for _ in range(delay_frames)]
        voice = self._voice
        steps = list(self.steps)
        step_i = 0
        speaking: np.ndarray | None = None
        speak_pos = 0
        cur_utt: Utterance | None = None
        # agent activity tracking
        agent_active = False
        silent_frames = 0
        reply_started = False      # the agent has spoken since the caller last spoke
        reply_active_ms = 0.0
        last_event_ms = 0.0        # end of the caller's last utterance (or answer)
        pending_stop: list[Utterance] = []
        seg_start: float | None = None
        t0 = time.monotonic()
        tick = 0
        while not call._stop.is_set():
            now_ms = tick * FRAME_MS
            # 1. agent -> line
            agent = call.next_playout_frame()
            agent_line = decode(encode(agent, cfg.codec), cfg.codec)
            active = energy_dbfs(agent_line) > AGENT_ACTIVE_DBFS
            if active:
                silent_frames = 0
                if seg_start is None:
                    seg_start = now_ms
                if speaking is None:
                    reply_started = True
                    reply_active_ms += FRAME_MS
            else:
                silent_frames += 1
                if seg_start is not None and silent_frames * FRAME_MS >= 300:
                    rec.agent_segments.append([seg_start, now_ms - (silent_frames - 1) * FRAME_MS])
                    seg_start = None
                if silent_frames == STOP_QUIET_FRAMES:  # quiet long enough: not a gap between words
                    for u in pending_stop:
                        u.agent_stopped_ms = max(u.start_ms, now_ms - (STOP_QUIET_FRAMES - 1) * FRAME_MS)
                    pending_stop.clear()
            agent_active = active

            # 2. script: start an utterance or hang up
            if speaking is None and step_i < len(steps):
                step = steps[step_i]
                waited = now_ms - last_event_ms
                if step.when == "now":
                    go = waited >= step.gap_ms
                elif step.when == "agent_speaking":
                    go = reply_started and agent_active and reply_active_ms >= step.after_ms
                else:
                    go = reply_started and silent_frames * FRAME_MS >= step.gap_ms
                if go or waited >= step.timeout_ms:
                    step_i += 1
                    if step.hangup or not step.say:
                        rec.utterances.append(Utterance(step.label, "(hangs up)", now_ms, now_ms, agent_active))
                        self._record_frame(rec, np.zeros(SAMPLES_PER_FRAME, np.int16), agent_line)
                        call._end_from_line("remote hangup")
                        break
                    speaking = voice.audio[step.say]
                    speak_pos = 0
                    cur_utt = Utterance(step.label, step.say, now_ms, None, agent_active)
                    rec.utterances.append(cur_utt)
                    if agent_active:
                        pending_stop.append(cur_utt)

            # 3. line -> agent: caller voice + echo + noise, through the codec
            mix = self._rng.normal(0.0, noise_rms, SAMPLES_PER_FRAME) if noise_rms > 0.5 else \
                np.zeros(SAMPLES_PER_FRAME)
            if speaking is not None:
                chunk = speaking[speak_pos:speak_pos + SAMPLES_PER_FRAME]
                mix[:len(chunk)] += chunk
                speak_pos += SAMPLES_PER_FRAME
                if speak_pos >= len(speaking):
                    speaking = None
                    cur_utt.end_ms = now_ms + FRAME_MS
                    last_event_ms = cur_utt.end_ms
                    if cur_utt.label != "backchannel":
                        reply_started = False
                        reply_active_ms = 0.0
            if delay_frames:
                echo_line.append(agent_line.astype(np.float64) * echo_gain)
                mix += echo_line.pop(0)
            else:
                mix += agent_line * echo_gain
            rx = decode(encode(np.clip(mix, -32768, 32767).astype(np.int16), cfg.codec), cfg.codec)
            call.rx.write(rx)
            call.rx_written()
            self._record_frame(rec, rx, agent_line)

            if now_ms >= self.max_call_s * 1000:
                call._end_from_line("sim call time limit")
                break
            # 4. real-time clock
            tick += 1
            delay = t0 + tick * FRAME_MS / 1000.0 - time.monotonic()
            if delay > 0:
                call._stop.wait(delay)
            elif delay < -0.1:
                rec.clock_slips += 1
        if seg_start is not None:
            rec.agent_segments.append([seg_start, tick * FRAME_MS])

    @staticmethod
    def _record_frame(rec: SimRecord, rx: np.ndarray, agent: np.ndarray) -> None:
        rec.caller_audio.append(rx)
        rec.agent_audio.append(agent)
