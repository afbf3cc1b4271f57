"""The main job's stages, timed: this code beside the previous fixed rules, or beside an earlier version.

Runs ``miaudit reproduce --studies 1,2,3,4,5,6`` (the seed's six studies, 5 seeds; ``--quick`` for the
reduced scale) once per variant in subprocesses, each with a fresh ``MIAUDIT_CACHE_DIR`` (no trained
model, attack result, compiled kernel or tuning choice carried over):

* ``tuned``: this code, the default; the first use of each architecture times the candidate paths (that
  time is part of the run's wall time and of its training stage) and caches the choice;
* ``rules``: this code with ``MIAUDIT_TUNING=off``, the engine's choices before tuning (bf16 wherever the
  CPU has native bf16 units, the compiled Adam step, at most 16 models per stack);
* ``previous``: the code of another checkout (``--previous-src``, e.g. a ``git worktree`` of an earlier
  commit), tuned: a change measured side by side with the version before it.

With evaluations side by side (``attack_threads`` in the manifest), the attack fitting and evaluation
stages add up the time of each evaluation, so they can exceed their share of the wall time.

Stage times come from each run's manifest (``timings``: training, attack fitting, evaluation, total);
the wall time of the whole command (start-up, data loading and writing included) is measured here.
The chosen paths are read from the run's manifest where it records them, else from the run's tuning
file. The machine's load from other processes during each run is printed: on a shared machine, compare
ratios with that in mind. The CPU time of each command (its process and children) depends less on that
load than its wall time does.

Usage::

    PYTHONPATH=src python benchmarks/main_job.py --quick     # reduced scale
    PYTHONPATH=src python benchmarks/main_job.py             # the full main job (minutes per variant)
    git worktree add /tmp/previous <commit>
    PYTHONPATH=src python benchmarks/main_job.py --variants previous,tuned --previous-src /tmp/previous
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
    root = args.previous_src if name == "previous" else Path(__file__).resolve().parents[1]
    src = str(Path(root).resolve() / "src")
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


VARIANTS = ("tuned", "rules", "previous")


def label(name: str, args: argparse.Namespace) -> str:
    return {
        "tuned": "this code (tuned)",
        "rules": "previous rules (MIAUDIT_TUNING=off)",
        "previous": f"previous code ({args.previous_src})",
    }[name]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="the studies at reduced scale (reproduce --quick)")
    ap.add_argument("--studies", default="1,2,3,4,5,6")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument(
        "--variants",
        "--order",
        default="rules,tuned",
        help="the variants, in the order they run: tuned, rules, previous",
    )
    ap.add_argument("--previous-src", type=Path, help="a checkout of earlier code, for the 'previous' variant")
    args = ap.parse_args(argv)
    order = [v.strip() for v in args.variants.split(",") if v.strip()]
    if "tuned" not in order or len(set(order)) != len(order) or not set(order) <= set(VARIANTS) or len(order) < 2:
        ap.error(f"--variants must name tuned and at least one of rules, previous, each once; got {args.variants!r}")
    if "previous" in order and (args.previous_src is None or not (args.previous_src / "src" / "miaudit").is_dir()):
        ap.error("the previous variant needs --previous-src, a checkout whose src/miaudit is the earlier code")
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
    t = results["tuned"]
    others = [n for n in order if n != "tuned"]
    print(f"# command: miaudit {t['cmd'].split('miaudit ', 1)[-1]} (each variant with a fresh MIAUDIT_CACHE_DIR)")
    print()
    print("| stage | " + " | ".join(label(n, args) for n in [*others, "tuned"]) + " | "
          + " | ".join(f"{n} / tuned" for n in others) + " |")  # fmt: skip
    print("|---|" + "---|" * (2 * len(others) + 1))

    def row(name: str, values: list[float], unit: str = " s", ratios: bool = True) -> None:
        cells = [f"{v:.1f}{unit}" if unit else f"{v:g}" for v in values]
        ratio = [f"{v / values[-1]:.2f}x" if ratios and values[-1] else "" for v in values[:-1]]
        print(f"| {name} | " + " | ".join(cells + ratio) + " |")

    def get(key: str) -> list[float]:
        return [results[n]["timings"].get(key, 1) for n in [*others, "tuned"]]

    for key, stage in STAGES:
        row(stage, get(key))
    row("total (manifest)", get("total_s"))
    row("wall time of the command", [results[n]["wall_s"] for n in [*others, "tuned"]])
    row("CPU time of the command", [results[n]["cpu_s"] for n in [*others, "tuned"]])
    row("models trained", get("models_trained"), unit="", ratios=False)
    row("evaluations side by side", get("attack_threads"), unit="", ratios=False)
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
    for name in order:
        print(f"main_job_{name}_s={results[name]['wall_s']:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
