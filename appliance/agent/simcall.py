"""Run whole calls on the simulated line: the engine behind `appliance demo`, the tests and the
call benchmark.

`run_sim_call(cfg, script=...)` builds a `SimLine` with the scripted caller, rings the box, runs
a `CallSession` on the call and returns a `SimCallResult` with the session (turns, transcript,
events, barge-ins) and the line's own record (what really went over the line, with line times).
"""
from __future__ import annotations

import asyncio
import dataclasses
from dataclasses import dataclass
from typing import Any

from ..lines.sim import SimLine, SimRecord
from ..stats import percentiles  # noqa: F401  (the demo and the call benchmark import it from here)
from . import engines
from .session import CallSession

DEMO_HANDOFF_TARGET = "+15550199"


@dataclass
class SimCallResult:
    session: CallSession
    record: SimRecord
    call: Any

    def line_v2v_ms(self) -> list[float]:
        """Line truth: end of each caller utterance -> first agent audio after it (ms)."""
        out = []
        segs = self.record.agent_segments
        for u in self.record.utterances:
            if u.end_ms is None or u.label in ("backchannel", "hang up") or u.text == "(hangs up)":
                continue
            after = [s[0] for s in segs if s[0] >= u.end_ms]
            if after:
                out.append(after[0] - u.end_ms)
        return out

    def barge_in_stop_ms(self) -> list[float]:
        return [b["stop_ms"] for b in self.record.barge_in_stops() if b["stop_ms"] is not None]


def demo_config(cfg):
    """The demo's adjustments: a handoff number (so the transfer is shown), no call recording."""
    agent = cfg.agent
    if not agent.handoff_target:
        agent = dataclasses.replace(agent, handoff_target=DEMO_HANDOFF_TARGET)
    return dataclasses.replace(cfg, agent=agent, recording=dataclasses.replace(cfg.recording, enabled=False))


async def run_sim_call(cfg, *, script=None, line_cfg=None, emit=None, on_transcript=None, llm_client=None,
                       record: bool | None = False, timeout_s: float = 240.0, tts=None,
                       session_hook=None) -> SimCallResult:
    """One simulated call, start to end."""
    from ..lines.sim_config import SimLineConfig

    if line_cfg is None:
        sims = [ln for ln in cfg.lines if getattr(ln, "type", None) == "sim"]
        line_cfg = sims[0] if sims else SimLineConfig()
    loop = asyncio.get_running_loop()
    if tts is None:
        tts = await loop.run_in_executor(None, engines.get_tts, cfg.speech)
    line = SimLine(line_cfg, tts=tts, script=script)
    await line.start()
    try:
        call = line.place_call()
        session = CallSession(call, cfg, emit=emit, on_transcript=on_transcript, llm_client=llm_client, record=record)
        if session_hook is not None:
            session_hook(session)
        await asyncio.wait_for(session.run(), timeout_s)
    finally:
        await line.stop()
    return SimCallResult(session, call.record, call)


