#!/usr/bin/env python3
"""A UDP relay that impairs RTP like a bad network: jitter, loss, reordering, duplication.

    python tools/rtp_impair.py --listen 127.0.0.1:40000 --forward 127.0.0.1:10000 \\
        --jitter-ms 60 --loss-pct 5 --reorder-pct 2 --dup-pct 1 [--seed 1] [--one-way]

Packets arriving on --listen from any peer go to --forward; packets coming back from --forward go
to the last peer seen (so a UA doing symmetric RTP through it works both ways). Each packet is
delayed by a uniform 0..jitter ms (which reorders packets whenever jitter exceeds their spacing),
dropped with probability loss, held back behind the next packet with probability reorder, and sent
twice with probability dup. --one-way impairs only the listen -> forward direction.
Ctrl-C prints the counts. Usable in-process too: `Impairment` + `start_relay()`.
"""
from __future__ import annotations

import argparse
import asyncio
import random
import signal
from dataclasses import dataclass, field


@dataclass
class Impairment:
    jitter_ms: float = 0.0
    loss_pct: float = 0.0
    reorder_pct: float = 0.0
    dup_pct: float = 0.0
    base_delay_ms: float = 0.0
    one_way: bool = False
    seed: int | None = None
    counts: dict = field(default_factory=lambda: {"in": 0, "out": 0, "lost": 0, "dup": 0, "reordered": 0})

    def __post_init__(self):
        if not 0 <= self.jitter_ms <= 1000 or not 0 <= self.loss_pct <= 100 \
                or not 0 <= self.reorder_pct <= 100 or not 0 <= self.dup_pct <= 100:
            raise ValueError("jitter 0-1000 ms, percentages 0-100")
        self.rng = random.Random(self.seed)


class _Side(asyncio.DatagramProtocol):
    def __init__(self, relay, name):
        self.relay = relay
        self.name = name
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        self.relay.received(self.name, data, addr)


class Relay:
    """listen socket <-> forward target, impairing on the way."""

    def __init__(self, imp: Impairment, forward: tuple[str, int]):
        self.imp = imp
        self.forward = forward
        self.peer: tuple[str, int] | None = None
        self.front: _Side | None = None      # faces the peers
        self.back: _Side | None = None       # faces the forward target (its own port, like a NAT)
        self._held: dict[str, tuple[bytes, tuple, object] | None] = {"front": None, "back": None}
        self.loop = asyncio.get_event_loop()

    @property
    def port(self) -> int:
        return self.front.transport.get_extra_info("sockname")[1]

    def received(self, side: str, data: bytes, addr) -> None:
        if side == "front":
            self.peer = (addr[0], addr[1])
            out, dest = self.back, self.forward
            impair = True
        else:
            if self.peer is None:
                return
            out, dest = self.front, self.peer
            impair = not self.imp.one_way
        imp = self.imp
        imp.counts["in"] += 1
        if not impair:
            out.transport.sendto(data, dest)
            imp.counts["out"] += 1
            return
        rng = imp.rng
        if rng.random() * 100 < imp.loss_pct:
            imp.counts["lost"] += 1
            return
        held = self._held[side]
        if held is None and rng.random() * 100 < imp.reorder_pct:
            self._held[side] = (data, dest, out)        # goes out right after the next packet
            imp.counts["reordered"] += 1
            return
        copies = 2 if rng.random() * 100 < imp.dup_pct else 1
        imp.counts["dup"] += copies - 1
        delay = (imp.base_delay_ms + rng.uniform(0, imp.jitter_ms)) / 1000.0
        for _ in range(copies):
            self._later(delay, out, data, dest)
        if held is not None:
            self._held[side] = None
            self._later(delay + 0.0005, held[2], held[0], held[1])

    def _later(self, delay, side, data, dest):
        def send():
            if side.transport is not None and not side.transport.is_closing():
                side.transport.sendto(data, dest)
                self.imp.counts["out"] += 1
        if delay <= 0:
            send()
        else:
            self.loop.call_later(delay, send)

    def close(self):
        for s in (self.front, self.back):
            if s and s.transport:
                s.transport.close()


async def start_relay(imp: Impairment, listen: tuple[str, int], forward: tuple[str, int]) -> Relay:
    loop = asyncio.get_running_loop()
    relay = Relay(imp, forward)
    relay.loop = loop
    _, relay.front = await loop.create_datagram_endpoint(lambda: _Side(relay, "front"), local_addr=listen)
    _, relay.back = await loop.create_datagram_endpoint(lambda: _Side(relay, "back"), local_addr=(listen[0], 0))
    return relay


def _hostport(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host, int(port)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--listen", type=_hostport, required=True, help="HOST:PORT the peers send to")
    p.add_argument("--forward", type=_hostport, required=True, help="HOST:PORT packets are relayed to")
    p.add_argument("--jitter-ms", type=float, default=0.0, help="uniform extra delay 0..N ms (0-120 typical)")
    p.add_argument("--loss-pct", type=float, default=0.0)
    p.add_argument("--reorder-pct", type=float, default=0.0)
    p.add_argument("--dup-pct", type=float, default=0.0)
    p.add_argument("--delay-ms", type=float, default=0.0, help="fixed extra delay")
    p.add_argument("--one-way", action="store_true", help="impair only listen -> forward")
    p.add_argument("--seed", type=int)
    args = p.parse_args(argv)
    try:
        imp = Impairment(args.jitter_ms, args.loss_pct, args.reorder_pct, args.dup_pct, args.delay_ms,
                         args.one_way, args.seed)
    except ValueError as exc:
        p.error(str(exc))

    async def run():
        relay = await start_relay(imp, args.listen, args.forward)
        print(f"relaying {args.listen[0]}:{relay.port} -> {args.forward[0]}:{args.forward[1]} "
              f"(jitter {imp.jitter_ms} ms, loss {imp.loss_pct}%, reorder {imp.reorder_pct}%, "
              f"dup {imp.dup_pct}%)", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        relay.close()
        print(f"counts: {imp.counts}", flush=True)

    asyncio.run(run())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
