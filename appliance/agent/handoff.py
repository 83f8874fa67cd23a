"""Handing a call to a human: the summary, the `handoff` event, and the transfer itself.

The line does the transfer (blind, or warm with a briefing when it can); this module decides what
to say and what the human is told. Without a configured target, or when the transfer fails, the
agent promises a call back and ends the call politely.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

NO_TARGET_LINE = "I've passed your details on, and a colleague will call you back shortly. Goodbye."
FAILED_LINE = "I'm sorry, I couldn't reach a colleague right now. Someone will call you back shortly. Goodbye."


@dataclass
class HandoffPlan:
    reason: str
    summary: str
    target: str | None
    mode: str              # 'blind' | 'warm' | 'none'
    briefing: str | None


def summarize(transcript: list[dict[str, Any]], slots: dict[str, Any] | None = None, max_chars: int = 300) -> str:
    """A short plain summary for the human: what the caller asked for, and the details collected."""
    said = [t["text"] for t in transcript if t.get("role") == "caller" and t.get("text")]
    parts = []
    if said:
        parts.append("Caller said: " + " / ".join(said[-3:]))
    if slots:
        parts.append("Details: " + ", ".join(f"{k}={v}" for k, v in slots.items() if v))
    text = ". ".join(parts) or "Caller asked for a person."
    return text if len(text) <= max_chars else text[:max_chars - 1] + "…"


def plan(call, target: str | None, reason: str, summary: str) -> HandoffPlan:
    caps = call.line.capabilities
    if not target:
        return HandoffPlan(reason, summary, None, "none", None)
    if caps.transfer_warm:
        return HandoffPlan(reason, summary, target, "warm",
                           f"Transferring a caller ({call.remote or 'unknown number'}). Reason: {reason}. {summary}")
    if caps.transfer_blind:
        return HandoffPlan(reason, summary, target, "blind", None)
    return HandoffPlan(reason, summary, target, "none", None)


def event_data(call, p: HandoffPlan, transcript: list[dict[str, Any]]) -> dict[str, Any]:
    """The `handoff` event (DESIGN.md): caller id, transcript, summary, reason (and where to)."""
    return {"call_id": call.call_id, "caller_id": call.remote, "reason": p.reason, "summary": p.summary,
            "target": p.target, "mode": p.mode,
            "transcript": [{"role": t["role"], "text": t["text"]} for t in transcript]}


async def transfer(call, p: HandoffPlan) -> bool:
    """Ask the line to transfer. False (logged) when it cannot."""
    if p.mode == "none" or not p.target:
        return False
    try:
        return bool(await call.transfer(p.target, p.mode, p.briefing))
    except Exception as exc:  # noqa: BLE001 - LineError or a line bug: fall back to a call-back promise
        log.warning("transfer to %s failed: %s", p.target, exc)
        return False
