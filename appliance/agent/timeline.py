"""The timeline picture of a simulated call (matplotlib): both waveforms, the caller's speech as the
agent's VAD and echo gate saw it, the caller's scripted utterances, the agent's turns, barge-ins
and each turn's voice-to-voice latency."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def plot_timeline(res, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s, rec = res.session, res.record
    stereo = rec.stereo().astype(np.float32) / 32768.0
    n = len(stereo)
    t = np.arange(n) / 8000.0
    dur = max(n / 8000.0, 1.0)
    fig, axes = plt.subplots(3, 1, figsize=(14, 7.5), sharex=True,
                             gridspec_kw={"height_ratios": [2, 2, 1.6]})
    step = max(1, n // 40000)
    for ax, ch, name, color in ((axes[0], 0, "caller line (as received)", "tab:blue"),
                                (axes[1], 1, "agent (as sent)", "tab:green")):
        ax.plot(t[::step], stereo[::step, ch], lw=0.4, color=color)
        ax.set_ylabel(name, fontsize=8)
        ax.set_ylim(-1, 1)
    # caller speech detected (VAD + echo gate)
    for start, end in s.timeline["caller"]:
        end = end if end is not None else n / 8.0
        axes[0].axvspan(start / 1000, end / 1000, color="tab:blue", alpha=0.12, lw=0)
    for i, u in enumerate(rec.utterances):
        text = u.text if len(u.text) <= 28 else u.text[:27] + "…"
        axes[0].text(u.start_ms / 1000, 0.92 - 0.22 * (i % 3), f"{u.label}: {text}", fontsize=7, va="top",
                     clip_on=True, bbox={"facecolor": "white", "alpha": 0.7, "lw": 0, "pad": 1})
    # agent turns
    for turn in s.turns:
        if turn.first_audio_ms is not None:
            axes[1].annotate("", xy=(turn.first_audio_ms / 1000, 0.6), xytext=(turn.speech_end_ms / 1000, 0.6),
                             arrowprops={"arrowstyle": "->", "color": "tab:red"})
            axes[1].text(turn.speech_end_ms / 1000, 0.7, f"v2v {turn.v2v:.0f} ms", fontsize=7, color="tab:red")
    # lanes: states, barge-ins, latency breakdown
    lane = axes[2]
    lane.set_ylim(0, 3)
    lane.set_yticks([0.5, 1.5, 2.5])
    lane.set_yticklabels(["turn latency", "barge-in", "agent state"], fontsize=8)
    colors = {"greeting": "tab:green", "speaking": "tab:green", "thinking": "tab:orange", "listening": "lightgrey",
              "handoff": "tab:purple", "answered": "white", "ended": "white"}
    states = s.timeline["states"] + [(n / 8.0, "end")]
    for (t0, st), (t1, _) in zip(states, states[1:], strict=False):
        lane.broken_barh([(t0 / 1000, max(0.0, (t1 - t0) / 1000))], (2.1, 0.8), color=colors.get(st, "white"))
        if (t1 - t0) > 1100:
            lane.text(t0 / 1000 + 0.05, 2.5, st, fontsize=6, va="center")
    for i, b in enumerate(s.barge_ins):
        c = "tab:red" if b.outcome == "barge_in" else "tab:olive"
        y = 1.7 if i % 2 == 0 else 1.3
        lane.plot([b.onset_ms / 1000], [y], marker="v", color=c, ms=8)
        lane.text(b.onset_ms / 1000 + 0.15, y, "barge-in: agent stopped" if b.outcome == "barge_in"
                  else "backchannel: paused, resumed", fontsize=7, va="center", color=c)
        for ax in axes[:2]:
            ax.axvline(b.onset_ms / 1000, color=c, lw=0.8, ls="--")
    seg_colors = (("endpoint", "tab:grey"), ("stt", "tab:blue"), ("llm_first_token", "tab:orange"),
                  ("tts_first_audio", "tab:green"))
    for turn in s.turns:
        x = turn.speech_end_ms / 1000
        for key, c in seg_colors:
            v = getattr(turn, key)
            if v:
                lane.broken_barh([(x, v / 1000)], (0.15, 0.7), color=c)
                x += v / 1000
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for _, c in seg_colors]
    lane.legend(handles, ["endpoint wait", "STT", "LLM / call flow first token", "TTS first audio"], fontsize=7,
                loc="upper center", bbox_to_anchor=(0.5, -0.32), ncol=4, frameon=False)
    lane.set_xlim(0, dur)
    lane.set_xlabel("seconds")
    fig.suptitle("appliance demo: simulated call timeline", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
