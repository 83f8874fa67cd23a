"""What the agent says next: the LLM, or the offline call flow, behind one small interface.

`respond(text)` yields `LlmEvent`s (text deltas, fillers, tool calls) in both cases, so the session
treats them alike: a call-flow `handoff` action becomes a `transfer_to_human` tool call and
`end_call` an `end_call` tool call.
"""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from .llm import LlmAgent, LlmEvent


class LlmDialogue:
    kind = "llm"
    can_speculate = True   # a reply can be started before the turn is confirmed, and undone

    def mark(self) -> int:
        """Where the history stands now (see `rollback`)."""
        return len(self.agent.history)

    def rollback(self, mark: int) -> None:
        """Forget a speculative exchange: the history back to `mark`."""
        del self.agent.history[mark:]

    def __init__(self, agent: LlmAgent, greeting: str):
        self.agent = agent
        self.greeting_text = greeting

    def greeting(self) -> str:
        self.agent.add_assistant(self.greeting_text)
        return self.greeting_text

    def respond(self, text: str) -> AsyncIterator[LlmEvent]:
        return self.agent.respond(text)

    def heard(self, text: str) -> None:
        self.agent.truncate_last_reply(text)

    def said(self, text: str) -> None:
        self.agent.add_assistant(text)

    def summary(self) -> str | None:
        return None

    async def aclose(self) -> None:
        await self.agent.aclose()


class FlowDialogue:
    kind = "callflow"
    # A reply can be started during the caller's pause (its words known from the speculative
    # transcript, its first clause synthesized) and taken back: the flow's state is restored.
    can_speculate = True

    def __init__(self, flow):
        self.flow = flow

    def mark(self):
        """The flow's state now (see `rollback`)."""
        return self.flow.snapshot()

    def rollback(self, mark) -> None:
        """Forget a speculative exchange: the flow's state as it was at `mark`."""
        self.flow.restore(mark)

    def greeting(self) -> str:
        return self.flow.start().text

    async def respond(self, text: str) -> AsyncIterator[LlmEvent]:
        reply = self.flow.respond(text)
        await asyncio.sleep(0)
        if reply.text:
            yield LlmEvent("text", reply.text)
        if reply.action == "handoff":
            yield LlmEvent("tool", name="transfer_to_human",
                           args={"reason": reply.reason or "handoff", "summary": self.flow.summary()})
        elif reply.action == "end_call":
            yield LlmEvent("tool", name="end_call", args={"reason": reply.reason or "end of call"})

    def heard(self, text: str) -> None:
        """The flow keeps no model history; its slots stand whatever the caller heard."""

    def said(self, text: str) -> None:
        pass

    def summary(self) -> str | None:
        return self.flow.summary()

    async def aclose(self) -> None:
        pass
