"""Small helpers shared by the fleet tests."""
from __future__ import annotations

import asyncio
import time

from testutil import ACL_EXAMPLE

from appliance.fleet import FleetConfig
from appliance.fleet.mosquitto import Mosquitto, make_tls

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


def acl_tls_broker(folder, **kw):
    """Generator for a module fixture: a mosquitto in `folder` with a fresh CA and server certificate
    (make_tls), the example ACL of firmware-config/ and `kw` (users=..., client_certs=True)."""
    tls = make_tls(folder / "tls")
    with Mosquitto(folder / "broker", acl_file=ACL_EXAMPLE, tls=tls, **kw) as broker:
        yield broker
