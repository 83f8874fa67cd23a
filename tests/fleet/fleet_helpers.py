"""Small helpers shared by the fleet tests."""
from __future__ import annotations

import asyncio
import time

from appliance.fleet import FleetConfig

FAST = {"reconnect_min_s": 0.1, "reconnect_max_s": 0.5, "health_interval_s": 1}


def cfg(port, **kw) -> FleetConfig:
    """A FleetConfig with quick retries, for tests."""
    return FleetConfig(port=port, **{**FAST, **kw})


async def wait_for(predicate, timeout_s=10.0) -> bool:
    """Poll `predicate` on the loop until true or the timeout (False)."""
    end = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > end:
            return False
        await asyncio.sleep(0.02)
    return True
