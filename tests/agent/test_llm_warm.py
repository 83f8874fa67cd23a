"""LlmAgent.warm: the connection to the endpoint is opened while the greeting plays and the first
turn's request goes over it; an endpoint that is not there costs the call nothing."""
from __future__ import annotations

import asyncio
import socket
import time

from appliance.agent.config import LLMConfig
from appliance.agent.llm import LlmAgent
from appliance.agent.llm_server import LlmServer


def _config(base_url: str) -> LLMConfig:
    return LLMConfig(base_url=base_url, model="local-test", api_key_env=None, timeout_ms=3000)


def test_warm_connection_carries_the_first_turn():
    with LlmServer(ttft_ms=50, tokens_per_s=200) as srv:
        async def go():
            agent = LlmAgent(_config(srv.base_url), "You are a receptionist.")
            try:
                ms = await agent.warm()
                assert ms is not None and ms < 3000
                assert srv.model_lists == 1 and srv.connections == 1
                await asyncio.sleep(6.0)   # longer than httpx's default keep-alive (5 s)
                text = "".join([ev.text async for ev in agent.respond("What are your opening hours?")
                                if ev.kind == "text"])
                assert text.strip()
            finally:
                await agent.aclose()
        asyncio.run(go())
        assert len(srv.requests) == 1
        assert srv.connections == 1, "the first turn opened a new connection instead of the warm one"


def test_warm_against_nothing_returns_none_quickly():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()   # nothing listens there now

    async def go():
        agent = LlmAgent(_config(f"http://127.0.0.1:{port}/v1"), "x")
        try:
            t0 = time.monotonic()
            assert await agent.warm(timeout_s=2.0) is None
            return time.monotonic() - t0
        finally:
            await agent.aclose()
    assert asyncio.run(go()) < 2.5
