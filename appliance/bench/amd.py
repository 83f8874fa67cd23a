"""Answering-machine detection over the phone-band corpus, against an app_amd baseline.

Renders (once, cached under `$APPLIANCE_CACHE` or `~/.cache/appliance/amd-corpus/`; `--cache`
to choose) the corpus of `tools/amd_corpus.py`, plays every recording to the detector as if live
and to a faithful re-implementation of Asterisk app_amd's default rules, and reports accuracy,
per-class precision and recall, the confusion matrix, decision times and beep-end error with
P50/P95, over all cases and per split (`dev`: tuned on; `test`: held-out voices and phrasings).

Transcripts arrive after the STT call's measured wall time (`--stt-clock wall`, the default) or
its CPU time (`--stt-clock cpu`: what a core of its own would take; on a machine shared with
other work most of the wall time is waiting for a core). `--stt-cache FILE` keeps every
transcript with its measured wall and CPU time, so a re-run replays the same calls quickly.

    appliance bench amd --json --stt-clock cpu --stt-cache ~/.cache/appliance/amd-stt-memo.json
"""
from __future__ import annotations

import importlib.util
import sys
import time
from pathlib import Path

import numpy as np

TARGETS = {"accuracy": 0.97, "human_as_machine_rate": 0.01, "human_decision_p50_ms": 1000, "beep_error_p95_ms": 100}
LABELS = ("human", "machine", "unknown")


def add_arguments(p):
    p.add_argument("--seed", type=int, default=None, help="corpus seed (default: the generator's)")
    p.add_argument("--count", type=int, default=None, help="corpus size (default: the generator's, 440)")
    p.add_argument("--limit", type=int, default=0, help="evaluate only every k-th case so that about this many run")
    p.add_argument("--no-stt", action="store_true", help="timing and tones only (no transcripts)")
    p.add_argument("--cache", type=Path, default=None, help="corpus cache root")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    p.add_argument("--split", choices=("dev", "test"), default=None, help="evaluate one split only (tune on dev)")
    p.add_argument("--stt-cache", type=Path, default=None,
                   help="JSON file memoising transcripts by audio hash (for quick re-runs while tuning; "
                        "pair it with --stt-latency-ms, as cached calls take no time)")
    p.add_argument("--stt-latency-ms", type=float, default=None,
                   help="model every transcript as arriving this long after it was asked for (default: measured)")
    p.add_argument("--stt-clock", choices=("wall", "cpu"), default="wall",
                   help="measured STT latency: wall time on this machine, or CPU time (one core of its own)")


def _corpus_module():
    path = Path(__file__).resolve().parents[2] / "tools" / "amd_corpus.py"
    if not path.is_file():
        from ..errors import NotBuiltYet
        raise NotBuiltYet(f"the AMD corpus generator {path} is not here (run from a source checkout)")
    spec = importlib.util.spec_from_file_location("amd_corpus", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["amd_corpus"] = mod
    spec.loader.exec_module(mod)
    return mod


def pct(values) -> dict | None:
    """{"p50", "p95"} of a list (None if empty)."""
    if not values:
        return None
    a = np.asarray(values, dtype=np.float64)
    return {"p50": round(float(np.percentile(a, 50)), 1), "p95": round(float(np.percentile(a, 95)), 1)}


def score(cases: list[dict], preds: list[dict]) -> dict:
    """The contract keys for one detector: `preds[i]` has label, decision_ms, beep_ms."""
    n = len(cases)
    confusion = {t: {p: 0 for p in LABELS} for t in ("human", "machine")}
    human_dec, machine_dec, beep_err, beep_missed, beep_false = [], [], [], 0, 0
    for c, p in zip(cases, preds, strict=True):
        confusion[c["label"]][p["label"]] += 1
        if c["label"] == "human" and p["label"] == "human":
            human_dec.append(p["decision_ms"] - c["first_turn_end_ms"])
        if c["label"] == "machine" and p["label"] == "machine":
            machine_dec.append(p["decision_ms"])
        if c["label"] == "machine" and c.get("beep_end_ms") is not None:
            if p.get("beep_ms") is None:
                beep_missed += 1
            else:
                beep_err.append(abs(p["beep_ms"] - c["beep_end_ms"]))
        elif p.get("beep_ms") is not None:
            beep_false += 1
    correct = confusion["human"]["human"] + confusion["machine"]["machine"]
    n_h = sum(confusion["human"].values())
    n_m = sum(confusion["machine"].values())
    per_class = {}
    for lab in ("human", "machine"):
        tp = confusion[lab][lab]
        pred_n = confusion["human"][lab] + confusion["machine"][lab]
        true_n = n_h if lab == "human" else n_m
        per_class[lab] = {"precision": round(tp / pred_n, 4) if pred_n else None,
                          "recall": round(tp / true_n, 4) if true_n else None}
    n_beep = len(beep_err) + beep_missed
    return {
        "cases": n,
        "accuracy": round(correct / n, 4) if n else None,
        "human_as_machine_rate": round(confusion["human"]["machine"] / n_h, 4) if n_h else None,
        "machine_as_human_rate": round(confusion["machine"]["human"] / n_m, 4) if n_m else None,
        "unknown_rate": round((confusion["human"]["unknown"] + confusion["machine"]["unknown"]) / n, 4) if n else None,
        "per_class": per_class,
        "confusion": confusion,
        "human_decision_ms": pct(human_dec),
        "machine_decision_ms": pct(machine_dec),
        "beep_error_ms": pct(beep_err),
        "beep_detected": f"{len(beep_err)}/{n_beep}",
        "beep_recall": round(len(beep_err) / n_beep, 4) if n_beep else None,
        "beeps_on_beepless_cases": beep_false,
    }


def run(args) -> dict:
    from ..detect.amd_run import load_stt, read_wav, run_live
    from ..detect.app_amd import run_app_amd
    from ..detect.config import AmdConfig

    corpus = _corpus_module()
    seed = args.seed if args.seed is not None else corpus.DEFAULT_SEED
    count = args.count if args.count is not None else corpus.DEFAULT_COUNT
    say = (lambda *a, **k: None) if args.quiet else (lambda *a, **k: print(*a, file=sys.stderr, flush=True, **k))
    t0 = time.perf_counter()
    d = corpus.ensure_corpus(seed, count, args.cache,
                             progress=None if args.quiet else
                             (lambda i, n: print(f"\rrendering corpus {i}/{n}", end="", file=sys.stderr)))
    render_s = time.perf_counter() - t0
    manifest = __import__("json").loads((d / "manifest.json").read_text())
    cases = manifest["cases"]
    if getattr(args, "split", None):
        cases = [c for c in cases if c.get("split", "dev") == args.split]
    if args.limit and args.limit < len(cases):
        step = len(cases) / args.limit
        cases = [cases[int(i * step)] for i in range(args.limit)]
    stt, stt_name = (None, "none") if args.no_stt else load_stt(threads=1)
    stt_cache = getattr(args, "stt_cache", None)
    if stt is not None and stt_cache is not None:
        stt = _memoised(stt, stt_cache)
    latency = getattr(args, "stt_latency_ms", None)
    stt_spent = [0.0]       # seconds really spent in STT calls (excluded from the detector's cost)
    if stt is not None:
        inner = stt

        def stt(pcm, _inner=inner):
            t0 = time.perf_counter()
            try:
                return _inner(pcm)
            finally:
                stt_spent[0] += time.perf_counter() - t0
                stt.last_timing = getattr(_inner, "last_timing", None)
        stt.last_timing = None
    ours, base, stt_ms, stt_cpu_ms, frame_us, details = [], [], [], [], [], []
    t_eval = time.perf_counter()
    for i, c in enumerate(cases):
        pcm = read_wav(d / c["file"])
        f0, spent0 = time.perf_counter(), stt_spent[0]
        run = run_live(pcm, AmdConfig(), stt, stt_latency_ms=latency, stt_clock=getattr(args, "stt_clock", "wall"))
        wall = time.perf_counter() - f0 - (stt_spent[0] - spent0)
        frames = max(1, min(len(pcm) // 160, (run.greeting_end_ms or len(pcm) // 8) // 20))
        frame_us.append(1e6 * wall / frames)
        stt_ms += run.stt_ms
        stt_cpu_ms += run.stt_cpu_ms
        r = run.result
        ours.append({"label": r.label, "decision_ms": r.decision_ms, "beep_ms": run.beep_ms, "cause": r.cause})
        b = run_app_amd(pcm)
        base.append({"label": b.label, "decision_ms": b.decision_ms, "beep_ms": None, "cause": b.cause})
        if r.label != c["label"]:
            details.append({"id": c["id"], "split": c.get("split"), "kind": c["kind"], "truth": c["label"], "got": r.label,
                            "cause": r.cause,
                            "decision_ms": r.decision_ms, "transcript": run.transcript, "voice": c["voice"],
                            "texts": c["texts"]})
        say(f"\r{i + 1}/{len(cases)} evaluated", end="")
    say("")
    if stt_cache is not None and stt is not None:
        inner.save()
    out = score(cases, ours)
    out["baseline"] = score(cases, base)
    out["baseline"]["name"] = "app_amd defaults (Asterisk apps/app_amd.c re-implemented)"
    # dev: what the detector was tuned on; test: held-out voices and phrasings (see tools/amd_corpus.py).
    out["splits"] = {}
    for split in sorted({c.get("split", "dev") for c in cases}):
        idx = [i for i, c in enumerate(cases) if c.get("split", "dev") == split]
        sub = [cases[i] for i in idx]
        out["splits"][split] = score(sub, [ours[i] for i in idx])
        out["splits"][split]["baseline"] = score(sub, [base[i] for i in idx])
    out.update({
        "stt_engine": stt_name,
        "stt_latency": "n/a" if stt is None else f"measured {getattr(args, 'stt_clock', 'wall')} time" if latency is None
        else f"fixed {latency:.0f} ms",
        "stt_calls": len(stt_ms), "stt_ms": pct(stt_ms), "stt_cpu_ms": pct(stt_cpu_ms),
        "frame_us": pct(frame_us), "corpus": str(d), "seed": seed, "generator_version": manifest["generator_version"],
        "render_s": round(render_s, 1), "eval_s": round(time.perf_counter() - t_eval, 1),
        "errors": details, "targets": TARGETS,
        "by_kind": _by_kind(cases, ours, base),
    })
    return out


def _memoised(stt, path: Path):
    """`stt` with its answers and measured wall/CPU times kept in a JSON file, keyed by the SHA-1
    of the audio: a re-run replays each call as it was measured (`last_timing`)."""
    import hashlib
    import json
    memo = json.loads(path.read_text()) if path.is_file() else {}

    def fn(pcm):
        key = hashlib.sha1(np.ascontiguousarray(pcm, dtype=np.int16).tobytes()).hexdigest()
        hit = memo.get(key)
        if not isinstance(hit, list):          # not yet measured (or an older text-only entry)
            t0, c0 = time.perf_counter(), time.process_time()
            text = stt(pcm)
            hit = memo[key] = [text, 1000.0 * (time.perf_counter() - t0), 1000.0 * (time.process_time() - c0)]
        fn.last_timing = (hit[1], hit[2])
        return hit[0]

    def save():
        path.write_text(json.dumps(memo))

    fn.save = save
    fn.last_timing = None
    return fn


def _by_kind(cases, ours, base) -> dict:
    kinds: dict[str, list[int]] = {}
    for c, o, b in zip(cases, ours, base, strict=True):
        k = f"{c['label']}/{c['kind']}"
        v = kinds.setdefault(k, [0, 0, 0])
        v[0] += 1
        v[1] += o["label"] == c["label"]
        v[2] += b["label"] == c["label"]
    return {k: {"cases": v[0], "correct": v[1], "baseline_correct": v[2]} for k, v in sorted(kinds.items())}


def _fmt_pct(p) -> str:
    return "n/a" if not p else f"P50 {p['p50']:.0f} / P95 {p['p95']:.0f}"


def report(r: dict) -> str:
    b = r["baseline"]

    def ok(flag):
        return "ok " if flag else "MISS"

    hd, be = r["human_decision_ms"], r["beep_error_ms"]
    lines = [
        f"AMD benchmark: {r['cases']} cases (corpus v{r['generator_version']}, seed {r['seed']}), STT: {r['stt_engine']} "
        f"({r.get('stt_latency')})",
        f"{'':32}{'ours':>22}{'app_amd baseline':>24}   target",
        f"{'accuracy':32}{r['accuracy']:>22.1%}{b['accuracy']:>24.1%}   >= 97%  {ok(r['accuracy'] >= 0.97)}",
        f"{'humans as machines':32}{r['human_as_machine_rate']:>22.1%}{b['human_as_machine_rate']:>24.1%}   <= 1%   "
        f"{ok(r['human_as_machine_rate'] <= 0.01)}",
        f"{'machines as humans':32}{r['machine_as_human_rate']:>22.1%}{b['machine_as_human_rate']:>24.1%}",
        f"{'unknown':32}{r['unknown_rate']:>22.1%}{b['unknown_rate']:>24.1%}",
        f"{'human decision after speech ms':32}{_fmt_pct(hd):>22}{_fmt_pct(b['human_decision_ms']):>24}   P50 <= 1000  "
        f"{ok(hd is not None and hd['p50'] <= 1000)}",
        f"{'machine decision ms':32}{_fmt_pct(r['machine_decision_ms']):>22}{_fmt_pct(b['machine_decision_ms']):>24}",
        f"{'beep end error ms':32}{_fmt_pct(be):>22}{'(no beep detection)':>24}   P95 <= 100  "
        f"{ok(be is not None and be['p95'] <= 100)}",
        f"{'beeps found':32}{r['beep_detected']:>22}",
        "",
        "per class        precision  recall   (baseline precision  recall)",
    ]
    for lab in ("human", "machine"):
        o, q = r["per_class"][lab], b["per_class"][lab]
        f = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
        lines.append(f"  {lab:14}{f(o['precision']):>10}{f(o['recall']):>8}   ({f(q['precision']):>10}{f(q['recall']):>8})")
    lines.append("confusion (truth -> predicted human/machine/unknown): ours " +
                 ", ".join(f"{t}: {list(v.values())}" for t, v in r["confusion"].items()) +
                 "; baseline " + ", ".join(f"{t}: {list(v.values())}" for t, v in b["confusion"].items()))
    for split, sr in r.get("splits", {}).items():
        sb = sr["baseline"]
        lines.append(f"split {split:5} ({sr['cases']} cases): accuracy {sr['accuracy']:.1%} (baseline {sb['accuracy']:.1%}), "
                     f"humans as machines {sr['human_as_machine_rate']:.1%} ({sb['human_as_machine_rate']:.1%}), "
                     f"machines as humans {sr['machine_as_human_rate']:.1%} ({sb['machine_as_human_rate']:.1%}), "
                     f"human decision {_fmt_pct(sr['human_decision_ms'])}, beep error {_fmt_pct(sr['beep_error_ms'])}")
    lines.append("by kind (correct / cases, baseline): " +
                 ", ".join(f"{k} {v['correct']}/{v['cases']} ({v['baseline_correct']})" for k, v in r["by_kind"].items()))
    lines.append(f"cost: detector {_fmt_pct(r['frame_us'])} us per 20 ms frame (without STT); "
                 f"STT {r['stt_calls']} calls, {_fmt_pct(r['stt_ms'])} ms wall, "
                 f"{_fmt_pct(r.get('stt_cpu_ms'))} ms CPU each (latency modelled: {r.get('stt_latency')}); eval {r['eval_s']} s")
    if r["errors"]:
        lines.append(f"errors ({len(r['errors'])}):")
        for e in r["errors"][:40]:
            lines.append(f"  {e['id']} [{e.get('split')}] {e['truth']}/{e['kind']} -> {e['got']} ({e['cause']} at {e['decision_ms']} ms) "
                         f"heard {e['transcript']!r}")
    return "\n".join(lines)
