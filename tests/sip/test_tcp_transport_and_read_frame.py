"""The line layer: no Task per 20 ms frame in `Call.read_frame(timeout=...)`; a SIP
request over TCP to a peer that cannot be reached fails at once with the cause (not a 408 after
Timer B)."""
from __future__ import annotations

import asyncio
import socket
import time

import numpy as np
import pytest
from testutil import free_port

from appliance.errors import LineError
from appliance.lines.base import SAMPLES_PER_FRAME, Call
from appliance.lines.sim import SimLine
from appliance.lines.sip import SipLine
from appliance.lines.sip.config import SipLineConfig


class _Call(Call):
    async def answer(self) -> None:
        pass

    async def hangup(self, cause: str = "local") -> None:
        self.mark_ended(cause)


def test_read_frame_with_timeout_creates_no_task_per_frame():
    frames = 25

    async def scenario():
        loop = asyncio.get_running_loop()
        call = _Call(SimLine(), "inbound", loop=loop)
        made: list[str] = []

        def factory(loop, coro, **kw):
            made.append(getattr(coro, "__qualname__", repr(coro)))
            return asyncio.Task(coro, loop=loop, **kw)

        def produce(left: int) -> None:  # the line's 20 ms clock, on the loop (like RTP)
            call.rx.write(np.full(SAMPLES_PER_FRAME, left, np.int16))
            call.rx_written()
            if left > 1:
                loop.call_later(0.02, produce, left - 1)

        loop.set_task_factory(factory)
        try:
            loop.call_later(0.02, produce, frames)
            got = [await call.read_frame(timeout=1.0) for _ in range(frames)]
        finally:
            loop.set_task_factory(None)
        assert made == [], f"{len(made)} task(s) created while reading {frames} frames: {made[:3]}"
        with pytest.raises(TimeoutError, match=r"no audio from the line within 0\.05 s"):
            await call.read_frame(timeout=0.05)
        call.mark_ended("remote")
        ended = await call.read_frame(timeout=1.0)
        return got, ended

    got, ended = asyncio.run(scenario())
    assert [int(f.samples[0]) for f in got] == list(range(frames, 0, -1))
    assert ended is None


def _closed_port() -> int:
    """A TCP port on 127.0.0.1 where nothing listens (connect is refused)."""
    port = free_port()
    with socket.socket() as s:  # make sure: a refused connect, not a listener
        assert s.connect_ex(("127.0.0.1", port)) != 0
    return port


def test_tcp_dial_to_unreachable_peer_fails_at_once_with_the_cause():
    dead = _closed_port()
    rtp = free_port(socket.SOCK_DGRAM)
    cfg = SipLineConfig(name="box", listen=f"127.0.0.1:{free_port()}", rtp_ports=f"{rtp}-{rtp + 20}")

    async def scenario():
        line = SipLine(cfg)
        await line.start()
        try:
            t0 = time.monotonic()
            with pytest.raises(LineError) as err:
                # without the fix the INVITE waits for Timer B (64*T1 = 32 s) and says "no-answer"
                await asyncio.wait_for(line.dial(f"sip:bob@127.0.0.1:{dead};transport=tcp", 20.0), 8.0)
            return time.monotonic() - t0, str(err.value), line.health()
        finally:
            await line.stop()

    elapsed, message, health = asyncio.run(scenario())
    assert health["tcp"]
    assert elapsed < 5.0, elapsed
    assert "503" in message and f"127.0.0.1:{dead}" in message and "connect failed" in message, message
