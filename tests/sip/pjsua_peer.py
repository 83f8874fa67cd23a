"""A PJSIP (pjsua2) user agent run as a child process by the interop tests.

    python pjsua_peer.py --port P --rtp-port R --play IN.wav --record OUT.wav
        (--call sip:box@127.0.0.1:5070 | --answer) [--seconds 3] [--dtmf 123]

Prints one JSON line per event (ready, state, media, dtmf, transfer_request, transfer_status,
replaced, done) on stdout; null sound device. Transfers are PJSIP's own: a REFER is accepted and the
new call (with the Replaces of an attended transfer, if any) placed by PJSIP; an INVITE with
Replaces takes the replaced call's place. The call that follows records to OUT.<n>.wav.
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import pjsua2 as pj


def say(**kw):
    print(json.dumps(kw), flush=True)


class Call(pj.Call):
    def __init__(self, acc, args, call_id=pj.PJSUA_INVALID_ID, record=None):
        super().__init__(acc, call_id)
        self.acc = acc
        self.args = args
        self.record = record if record is not None else args.record
        self.player = None
        self.recorder = None
        self.confirmed_at = None
        self.disconnected = False
        self.digits = ""

    def onCallState(self, prm):
        ci = self.getInfo()
        say(event="state", state=ci.stateText, code=ci.lastStatusCode)
        if ci.state == pj.PJSIP_INV_STATE_CONFIRMED:
            self.confirmed_at = time.monotonic()
        if ci.state == pj.PJSIP_INV_STATE_DISCONNECTED:
            self.disconnected = True

    def onCallMediaState(self, prm):
        ci = self.getInfo()
        for i, mi in enumerate(ci.media):
            if mi.type == pj.PJMEDIA_TYPE_AUDIO and mi.status == pj.PJSUA_CALL_MEDIA_ACTIVE:
                aud = self.getAudioMedia(i)
                if self.player is None and self.args.play:
                    self.player = pj.AudioMediaPlayer()
                    self.player.createPlayer(self.args.play, pj.PJMEDIA_FILE_NO_LOOP)
                    self.player.startTransmit(aud)
                if self.recorder is None and self.record:
                    self.recorder = pj.AudioMediaRecorder()
                    self.recorder.createRecorder(self.record)
                    aud.startTransmit(self.recorder)
                say(event="media", codec=self.getStreamInfo(i).codecName)

    def onDtmfDigit(self, prm):
        self.digits += prm.digit
        say(event="dtmf", digit=prm.digit)

    def _next_call(self, call_id=pj.PJSUA_INVALID_ID):
        self.acc.generation += 1
        record = None
        if self.args.record:
            record = self.args.record[:-4] + f".{self.acc.generation}.wav"
        call = Call(self.acc, self.args, call_id, record)
        self.acc.keep.append(call)
        self.acc.call = call  # the main loop follows the newest call
        return call

    def onCallTransferRequest(self, prm):  # REFER received: PJSIP places the new call
        say(event="transfer_request", dst=prm.dstUri, code=prm.statusCode)
        prm.newCall = self._next_call()

    def onCallTransferStatus(self, prm):
        say(event="transfer_status", code=prm.statusCode, final=bool(prm.finalNotify))

    def onCallReplaced(self, prm):  # an INVITE with Replaces took this call's place
        say(event="replaced", new_call=prm.newCallId)
        prm.newCall = self._next_call(prm.newCallId)


class Account(pj.Account):
    def __init__(self, args):
        super().__init__()
        self.args = args
        self.call = None
        self.keep = []      # Python owns the Call objects PJSIP refers to: keep them alive
        self.generation = 0

    def onIncomingCall(self, prm):
        self.call = Call(self, self.args, prm.callId)
        op = pj.CallOpParam()
        op.statusCode = 200
        self.call.answer(op)


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--rtp-port", type=int, required=True)
    p.add_argument("--play")
    p.add_argument("--record")
    p.add_argument("--call")
    p.add_argument("--answer", action="store_true")
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--dtmf", default="")
    p.add_argument("--timeout", type=float, default=20.0)
    args = p.parse_args()

    ep = pj.Endpoint()
    ep.libCreate()
    cfg = pj.EpConfig()
    cfg.uaConfig.threadCnt = 0
    cfg.uaConfig.mainThreadOnly = True
    cfg.logConfig.level = 1
    cfg.logConfig.consoleLevel = 1
    cfg.medConfig.clockRate = 8000
    cfg.medConfig.sndClockRate = 8000
    cfg.medConfig.hasIoqueue = True
    ep.libInit(cfg)
    tcfg = pj.TransportConfig()
    tcfg.port = args.port
    tcfg.boundAddress = "127.0.0.1"
    tcfg.publicAddress = "127.0.0.1"
    ep.transportCreate(pj.PJSIP_TRANSPORT_UDP, tcfg)
    ep.libStart()
    ep.audDevManager().setNullDev()
    for codec in ep.codecEnum2():
        prio = 255 if codec.codecId.startswith("PCMU") else (200 if codec.codecId.startswith("PCMA") else 0)
        ep.codecSetPriority(codec.codecId, prio)
    acfg = pj.AccountConfig()
    acfg.idUri = f"sip:pjsua@127.0.0.1:{args.port}"
    acfg.mediaConfig.transportConfig.port = args.rtp_port
    acfg.mediaConfig.transportConfig.portRange = 10
    acfg.mediaConfig.transportConfig.boundAddress = "127.0.0.1"
    acfg.mediaConfig.transportConfig.publicAddress = "127.0.0.1"
    acc = Account(args)
    acc.create(acfg)
    say(event="ready")
    if args.call:
        acc.call = Call(acc, args)
        acc.call.makeCall(args.call, pj.CallOpParam(True))
    deadline = time.monotonic() + args.timeout
    sent_dtmf = False
    hung_up = False
    while time.monotonic() < deadline:
        ep.libHandleEvents(20)
        call = acc.call
        if call is None or call.confirmed_at is None:
            continue
        if call.disconnected:
            break
        elapsed = time.monotonic() - call.confirmed_at
        if args.dtmf and not sent_dtmf and elapsed > 1.0:
            call.dialDtmf(args.dtmf)
            sent_dtmf = True
        if args.seconds and elapsed > args.seconds and not hung_up:
            call.hangup(pj.CallOpParam())
            hung_up = True
    call = acc.call
    say(event="done", disconnected=bool(call and call.disconnected), digits=call.digits if call else "",
        calls=1 + acc.generation)
    for _ in range(20):
        ep.libHandleEvents(10)
    for c in [call, *acc.keep]:
        if c is not None:
            c.player = None
            c.recorder = None
    acc.call = None
    acc.keep = []
    del call, c
    acc.shutdown()
    ep.libDestroy()
    return 0


if __name__ == "__main__":
    sys.exit(main())
