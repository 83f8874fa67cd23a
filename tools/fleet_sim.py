#!/usr/bin/env python3
"""Simulate a fleet of phone-line boxes against an MQTT broker (scale tests, dashboards, demos).

    tools/fleet_sim.py --boxes 1000 --duration 60                 # against 127.0.0.1:1883
    tools/fleet_sim.py --local-broker --boxes 1000 --duration 30  # starts its own mosquitto
    tools/fleet_sim.py --host broker.lan --port 8883 --tls-ca ca.crt --username-from-id --password-env PW

Each virtual box publishes retained status and health, call events (QoS 1) and answers `cmd/ping`,
exactly on the topics of a real box (appliance/<id>/...). Prints a summary (JSON with --json).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from appliance.fleet.sim import VirtualFleet  # noqa: E402


def _cpu_s() -> float:
    t = os.times()
    return t.user + t.system


async def simulate(args) -> dict:
    broker = None
    host, port = args.host, args.port
    if args.local_broker:
        from appliance.fleet.mosquitto import Mosquitto

        broker = Mosquitto(Path(tempfile.mkdtemp(prefix="fleet-sim-"))).start()
        host, port = "127.0.0.1", broker.port
    try:
        fleet = VirtualFleet(host, port, args.boxes, prefix=args.prefix,
                             password=os.environ.get(args.password_env) if args.password_env else None,
                             username_from_id=args.username_from_id, tls_ca=args.tls_ca)
        cpu0, b0 = _cpu_s(), broker.cpu_s() if broker else None
        storm_s = await fleet.connect(timeout_s=args.connect_timeout)
        if not args.json:
            print(f"{fleet.stats.connected}/{args.boxes} boxes connected in {storm_s:.2f} s", flush=True)
        t0 = time.monotonic()
        await fleet.run(args.duration, args.calls_per_hour, args.health_interval)
        await fleet.drain()
        wall = time.monotonic() - t0
        out = fleet.stats.as_dict()
        out.update(duration_s=round(wall, 1), sim_rss_mb=fleet.rss_mb(),
                   sim_cpu_pct=round(100 * (_cpu_s() - cpu0) / max(wall + storm_s, 1e-9), 1))
        if broker:
            out["broker_cpu_pct"] = round(100 * (broker.cpu_s() - b0) / max(wall + storm_s, 1e-9), 1)
            from appliance.fleet.health import process_rss_mb

            out["broker_rss_mb"] = process_rss_mb(pid=broker.pid)
        await fleet.close()
        return out
    finally:
        if broker:
            broker.stop()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=1883)
    p.add_argument("--local-broker", action="store_true", help="start a private mosquitto on a free port")
    p.add_argument("--boxes", type=int, default=100, help="virtual boxes (1-5000)")
    p.add_argument("--prefix", default="sim-", help="device id prefix (ids are PREFIX0000, PREFIX0001, ...)")
    p.add_argument("--duration", type=float, default=30.0, help="seconds to run after connecting")
    p.add_argument("--calls-per-hour", type=float, default=30.0, help="per box")
    p.add_argument("--health-interval", type=float, default=10.0, help="seconds between health reports")
    p.add_argument("--connect-timeout", type=float, default=60.0)
    p.add_argument("--username-from-id", action="store_true", help="log in as the device id (ACL example)")
    p.add_argument("--password-env", help="environment variable holding the password")
    p.add_argument("--tls-ca", help="CA certificate: connect with TLS")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    if not 1 <= args.boxes <= 5000:
        p.error(f"--boxes {args.boxes}: expected 1-5000")
    result = asyncio.run(simulate(args))
    print(json.dumps(result) if args.json else "\n".join(f"{k}: {v}" for k, v in result.items()))
    return 0 if result["connected"] + result["disconnects"] >= 0 and not result["refused"] else 1


if __name__ == "__main__":
    sys.exit(main())
