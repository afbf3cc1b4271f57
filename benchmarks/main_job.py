"""The main job's stages, timed: the engine's measured path choices beside the previous fixed rules.

Runs ``miaudit reproduce --studies 1,2,3,4,5,6`` (the seed's six studies, 5 seeds; ``--quick`` for the
reduced scale) twice in subprocesses, each with a fresh ``MIAUDIT_CACHE_DIR`` (no trained model,
attack result, compiled kernel or tuning choice carried over):

* ``rules``: ``MIAUDIT_TUNING=off``, the engine's choices before tuning (bf16 wherever the CPU has
  native bf16 units, the compiled Adam step, at most 16 models per stack);
* ``tuned``: the default; the first use of each architecture times the candidate paths (that time
  is part of the run's wall time and of its training stage) and caches the choice.

Stage times come from each run's manifest (``timings``: training, attack fitting, evaluation, total);
the wall time of the whole command (start-up, data loading and writing included) is measured here.
The chosen paths are read from the run's manifest where it records them, else from the run's tuning
file. The machine's load from other processes during each run is printed: on a shared machine, compare
ratios with that in mind. The CPU time of each command (its process and children) depends less on that
load than its wall time does.

Usage::

    PYTHONPATH=src python benchmarks/main_job.py --quick     # reduced scale
    PYTHONPATH=src python benchmarks/main_job.py             # the full main job (minutes per variant)
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

STAGES = (("training_s", "training"), ("attack_fit_s", "attack fitting"), ("evaluation_s", "evaluation"))


def cpu_model_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, sep, value = line.partition(":")
            if sep and key.strip() == "model name":
                return value.strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def cpu_seconds() -> tuple[float, float]:
    """(busy CPU seconds of the machine since boot, CPU seconds of this process's reaped children)."""
    own = sum(getattr(resource.getrusage(resource.RUSAGE_CHILDREN), f) for f in ("ru_utime", "ru_stime"))
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError, IndexError):
        return float("nan"), own
    busy = sum(fields[i] for i in (0, 1, 2, 5, 6) if i < len(fields))
    return busy / os.sysconf("SC_CLK_TCK"), own


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


def run_variant(name: str, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """One ``miaudit reproduce`` in a subprocess with a fresh cache; its manifest, wall time and load."""
    cache = workdir / f"cache-{name}"
    out = workdir / f"run-{name}"
    env = dict(os.environ, MIAUDIT_CACHE_DIR=str(cache))
    env.pop("MIAUDIT_TUNING", None)
    if name == "rules":
        env["MIAUDIT_TUNING"] = "off"
    src = str(Path(__file__).resolve().parents[1] / "src")
    env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    cmd = [sys.executable, "-m", "miaudit", "reproduce", "--studies", args.studies, "--seeds", str(args.seeds)]
    cmd += ["--out", str(out), "--no-report", *(["--quick"] if args.quick else [])]
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    load0 = loadavg()
    busy0, own0 = cpu_seconds()
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    busy1, own1 = cpu_seconds()
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-3000:])
        raise SystemExit(f"{name}: miaudit reproduce failed with exit code {proc.returncode}")
    manifest = json.loads((out / "manifest.json").read_text())
    others = max(0.0, (busy1 - busy0) - (own1 - own0))
    tuning_file = cache / "tuning.json"
    choices = manifest.get("engine", {}).get("choices")
    if choices is None and tuning_file.is_file():
        entries = json.loads(tuning_file.read_text()).get("entries", {})
        choices = [
            {"model": "-".join(map(str, e["key"]["layers"])), **e["choice"], "reason": e["reason"]}
            for e in entries.values()
        ]
    return {
        "wall_s": wall,
        "cpu_s": own1 - own0,
        "timings": manifest["timings"],
        "choices": choices or [],
        "others_share": others / (cores * wall),
        "load": f"{load0} / {loadavg()}",
        "cmd": " ".join(cmd[1:]),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="the studies at reduced scale (reproduce --quick)")
    ap.add_argument("--studies", default="1,2,3,4,5,6")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--order", default="rules,tuned", help="which variant runs first (comma-separated)")
    args = ap.parse_args(argv)
    order = [v.strip() for v in args.order.split(",") if v.strip()]
    if sorted(order) != ["rules", "tuned"]:
        ap.error(f"--order must name rules and tuned once each; got {args.order!r}")
    started = datetime.datetime.now().astimezone()
    import torch

    print(
        f"# CPU: {cpu_model_name()} ({os.cpu_count()} cores, {platform.machine()}); started {started:%Y-%m-%d %H:%M %Z}"
    )
    print(f"# torch {torch.__version__}; Python {platform.python_version()}")
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="miaudit-main-job-") as tmp:
        for name in order:
            print(f"# running {name} ...", file=sys.stderr, flush=True)
            results[name] = run_variant(name, args, Path(tmp))
    r, t = results["rules"], results["tuned"]
    print(f"# command: miaudit {t['cmd'].split('miaudit ', 1)[-1]} (each variant with a fresh MIAUDIT_CACHE_DIR)")
    print()
    print("| stage | previous rules (MIAUDIT_TUNING=off) | tuned | rules / tuned |")
    print("|---|---|---|---|")
    for key, label in STAGES:
        a, b = r["timings"][key], t["timings"][key]
        print(f"| {label} | {a:.1f} s | {b:.1f} s | {a / b if b else float('nan'):.2f}x |")
    a, b = r["timings"]["total_s"], t["timings"]["total_s"]
    print(f"| total (manifest) | {a:.1f} s | {b:.1f} s | {a / b:.2f}x |")
    print(
        f"| wall time of the command | {r['wall_s']:.1f} s | {t['wall_s']:.1f} s | {r['wall_s'] / t['wall_s']:.2f}x |"
    )
    print(f"| CPU time of the command | {r['cpu_s']:.1f} s | {t['cpu_s']:.1f} s | {r['cpu_s'] / t['cpu_s']:.2f}x |")
    print(f"| models trained | {r['timings']['models_trained']} | {t['timings']['models_trained']} | |")
    print()
    for name in order:
        res = results[name]
        print(
            f"# {name}: other processes used {100 * res['others_share']:.0f}% of the machine's cores during the run; "
            f"load average at start / end {res['load']}"
        )
        if name == "rules" and not res["choices"]:
            print("#   fixed rules: bf16 where the CPU has native bf16 units, compiled Adam, at most 16 per chunk")
        for c in res["choices"]:
            print(
                f"#   {c.get('model', '?')}: {c.get('precision')} {c.get('path')}, {c.get('adam')} Adam, "
                f"at most {c.get('max_chunk')} per chunk: {c.get('reason', '')}"
            )
    print(f"main_job_tuned_s={t['wall_s']:.1f}")
    print(f"main_job_rules_s={r['wall_s']:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
