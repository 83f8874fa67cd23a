"""Configuration of the agent: persona, LLM endpoint, call flow, recordings."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class LLMConfig:
    base_url: str = field(default="https://api.openai.com/v1", metadata={"help": "any OpenAI-compatible endpoint"})
    model: str = "gpt-4o-mini"
    api_key_env: str | None = field(default="OPENAI_API_KEY", metadata={"help": "name of the environment variable holding the key (never the key itself)"})
    first_token_filler_ms: int = field(default=1500, metadata={"help": "say a short filler if the first token is this late", "min": 200, "max": 10000})
    timeout_ms: int = field(default=6000, metadata={"min": 500, "max": 60000})
    temperature: float = field(default=0.4, metadata={"min": 0.0, "max": 2.0})


@dataclass(frozen=True)
class AgentConfig:
    persona: str = field(default="You are a friendly receptionist answering the phone for a small business. Keep answers short: one or two sentences.", metadata={"help": "system prompt"})
    greeting: str = "Hello, thanks for calling. How can I help you?"
    handoff_line: str = "Let me put you through to a colleague. One moment please."
    handoff_target: str | None = field(default=None, metadata={"help": "number or SIP URI of the human to hand off to"})
    call_flow: str | None = field(default=None, metadata={"help": "YAML call flow used when no llm is configured; none: the built-in one"})
    barge_in_min_ms: int = field(default=250, metadata={"help": "caller speech this long interrupts the agent", "min": 50, "max": 3000})
    barge_in_pause_ms: int = field(default=60, metadata={"help": "caller speech this long pauses the agent at once; it resumes if the speech stops before barge_in_min_ms (a backchannel)", "min": 20, "max": 3000})
    vad_hangover_ms: int = field(default=100, metadata={"help": "VAD silence before speech counts as over (the endpointer decides the turn; keep this short)", "min": 40, "max": 2000})
    speculate: bool = field(default=True, metadata={"help": "start the reply (LLM request, first clause) during the caller's pause, before the end of the turn is certain; dropped and undone if the caller goes on. Off: no LLM request is ever wasted, replies come ~300-500 ms later"})
    max_call_s: int = field(default=900, metadata={"min": 10, "max": 86400})


@dataclass(frozen=True)
class RecordingConfig:
    enabled: bool = True
    dir: str | None = field(default=None, metadata={"help": "default /var/lib/appliance/calls as root, else ~/.local/share/appliance/calls"})
    keep_days: int = field(default=30, metadata={"help": "delete recordings older than this; 0: no age limit", "min": 0, "max": 3650})
    max_mb: int = field(default=2000, metadata={"min": 1})
