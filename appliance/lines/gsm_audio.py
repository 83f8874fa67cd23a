"""Audio paths of GSM modems (MODEMS.md §2.3): serial PCM (SIM7600 `AT+CPCMREG=1`, EC25
`AT+QPCMV=1,0`: 8 kHz 16-bit little-endian, 320 bytes per 20 ms on the module's clock) and USB
audio (a UAC sound card: EC25 `QPCMV=1,2`, or a USB sound card wired to a SIM800's MIC/SPK).

Serial PCM is paced by the module: every 320-byte frame it sends is answered by one 320-byte
frame of agent audio (after a small lead), so the module never underruns and latency never
grows, whatever its crystal does; `ClockStats` measures the drift.
"""
from __future__ import annotations

import logging
import threading
import time

import numpy as np

from .at import ModemGone
from .base import Call
from .modem_audio import ClockStats

log = logging.getLogger(__name__)

FRAME_BYTES = 320


class SerialPcmAudio:
    """PCM over a second serial port; one reader thread does receive and lockstep transmit."""

    def __init__(self, port: str, call: Call, clock: ClockStats, *, baudrate: int = 115200, prime_frames: int = 3):
        self.port, self.call, self.clock = port, call, clock
        self.baudrate, self.prime_frames = baudrate, prime_frames
        self.frames_in = self.frames_out = 0
        self.underruns = self.overruns = 0
        self.cpu_s = 0.0
        self.ended = False
        self._ser = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        import serial

        try:
            self._ser = serial.serial_for_url(self.port, baudrate=self.baudrate, timeout=0.05, write_timeout=1.0)
            self._ser.reset_input_buffer()
        except (serial.SerialException, OSError, ValueError) as exc:
            raise ModemGone(f"cannot open audio port {self.port}: {exc}") from exc
        for _ in range(self.prime_frames):
            self._send()
        self._thread = threading.Thread(target=self._loop, name="gsm-pcm", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=1.0)
        ser, self._ser = self._ser, None
        if ser is not None:
            try:
                ser.close()
            except Exception:  # noqa: BLE001
                pass
        self.ended = True

    def _send(self) -> None:
        frame = self.call.next_playout_frame()
        ser = self._ser
        if ser is not None:
            ser.write(frame.astype("<i2").tobytes())
            self.frames_out += 1

    def _loop(self) -> None:
        acc = bytearray()
        ser = self._ser
        while not self._stop.is_set() and ser is not None:
            try:
                data = ser.read(max(FRAME_BYTES, min(ser.in_waiting, 4096)))
            except Exception as exc:  # noqa: BLE001 - unplug
                log.debug("audio port read failed: %s", exc)
                break
            if not data:
                continue
            t_cpu = time.thread_time()
            acc += data
            while len(acc) >= FRAME_BYTES:
                pcm = np.frombuffer(bytes(acc[:FRAME_BYTES]), dtype="<i2").astype(np.int16)
                del acc[:FRAME_BYTES]
                self.call.rx.write(pcm)
                self.call.rx_written()
                self.frames_in += 1
                self.clock.tick()
                try:
                    self._send()
                except Exception as exc:  # noqa: BLE001
                    log.debug("audio port write failed: %s", exc)
                    self._stop.set()
                    break
            self.cpu_s += time.thread_time() - t_cpu
        self.ended = True


class UsbAudio:
    """A USB audio device via sounddevice (PortAudio), 8 kHz mono int16, 20 ms blocks. The
    device's clock pulls playout in its callback: one frame out per frame in."""

    def __init__(self, device: str | None, call: Call, clock: ClockStats):
        self.device, self.call, self.clock = device, call, clock
        self.frames_in = self.frames_out = 0
        self.underruns = self.overruns = 0
        self.cpu_s = 0.0
        self.ended = False
        self._stream = None

    def start(self) -> None:
        try:
            import sounddevice as sd
        except ImportError as exc:  # pragma: no cover - optional dependency
            raise ModemGone("USB audio needs sounddevice: pip install 'phoneline-appliance[audio]'") from exc

        def callback(indata, outdata, frames, time_info, status) -> None:
            if status:
                self.overruns += int(bool(status.input_overflow))
                self.underruns += int(bool(status.output_underflow))
            pcm = np.frombuffer(bytes(indata), dtype=np.int16)
            self.call.rx.write(pcm)
            self.call.rx_written()
            self.frames_in += 1
            self.clock.tick()
            out = self.call.next_playout_frame()
            outdata[:] = out[: frames].astype(np.int16).tobytes()
            self.frames_out += 1

        try:
            self._stream = sd.RawStream(samplerate=8000, blocksize=160, channels=1, dtype="int16",
                                        device=self.device, callback=callback)
            self._stream.start()
        except Exception as exc:  # noqa: BLE001 - PortAudio errors
            raise ModemGone(f"cannot open USB audio device {self.device!r}: {exc}") from exc

    def stop(self) -> None:
        s, self._stream = self._stream, None
        if s is not None:
            try:
                s.stop()
                s.close()
            except Exception:  # noqa: BLE001
                pass
        self.ended = True
