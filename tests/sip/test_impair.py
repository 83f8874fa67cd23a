"""The RTP impairment relay (tools/rtp_impair.py) and a call through it: baresip's tone crosses a
network with jitter and loss into the box's jitter buffer, which conceals the losses and keeps the
tone continuous (the bench measures the whole range of profiles; this checks one)."""
from __future__ import annotations

import asyncio
import socket
import struct

from appliance.bench import sip as bench_sip

from .conftest import needs_baresip
from .peers import free_port


def test_relay_loses_duplicates_reorders_and_relays_back():
    impair = bench_sip._tool("rtp_impair")

    async def scenario():
        loop = asyncio.get_running_loop()
        got, back = [], []

        class Target(asyncio.DatagramProtocol):  # reads as packets come: no socket buffer overflow
            def datagram_received(self, data, addr):
                got.append(struct.unpack("!I", data)[0])
                back[:] = [addr]

        target, _ = await loop.create_datagram_endpoint(Target, local_addr=("127.0.0.1", 0))
        imp = impair.Impairment(jitter_ms=30, loss_pct=10, reorder_pct=5, dup_pct=5, seed=7)
        relay = await impair.start_relay(imp, ("127.0.0.1", 0), target.get_extra_info("sockname"))
        peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        peer.bind(("127.0.0.1", 0))
        peer.setblocking(False)
        for i in range(400):
            peer.sendto(struct.pack("!I", i), ("127.0.0.1", relay.port))
            if i % 20 == 19:
                await asyncio.sleep(0.005)
        await asyncio.sleep(0.2)
        for _ in range(8):  # the way back (to the last peer seen) is impaired too: send a few
            target.sendto(b"pong", back[0])
        await asyncio.sleep(0.1)
        reply = await loop.sock_recv(peer, 64)
        relay.close()
        target.close()
        peer.close()
        return imp.counts, got, reply

    counts, got, reply = asyncio.run(scenario())
    assert reply == b"pong"
    assert counts["in"] == 408 and 20 <= counts["lost"] <= 70 and counts["dup"] > 5 and counts["reordered"] > 5
    assert len(got) == 400 - counts["lost"] + counts["dup"]
    assert len(set(got)) == 400 - counts["lost"]  # the duplicates are copies
    assert any(b < a for a, b in zip(got, got[1:])), "jitter and holding back must reorder"


@needs_baresip
def test_call_through_jitter_and_loss_keeps_the_tone_continuous(tmp_path):
    peers = bench_sip._tool("sip_peers")
    impair = bench_sip._tool("rtp_impair")
    m = asyncio.run(bench_sip._impair_one(peers, impair, tmp_path, (60, 3, 1, 1), free_port() % 1000))
    assert m["relay"]["lost"] > 0 and m["relay"]["in"] > 300, m
    assert m["concealed"] > 0, m  # the losses reached the jitter buffer and were concealed
    assert m["box_continuity"] >= 0.9 and m["box_tone_db"] > 15, m
    assert m["jb_target_ms"] >= 40, m  # the buffer grew to the jitter it saw
    assert m["far_continuity"] >= 0.9, m  # baresip heard the box through the same relay
