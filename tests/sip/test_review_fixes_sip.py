"""Review fixes in the line layer: no Task per 20 ms frame in `Call.read_frame(timeout=...)`."""
from __future__ import annotations

import asyncio

import numpy as np
import pytest

from appliance.lines.base import SAMPLES_PER_FRAME, Call
from appliance.lines.sim import SimLine


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
