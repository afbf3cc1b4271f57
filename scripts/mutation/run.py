"""Mutation testing of the modules whose numbers users read, with mutmut, one group of modules at a time.

Usage (from the repository root; ``make mutation`` runs the first line)::

    .venv/bin/python scripts/mutation/run.py                      # every group, the sample sizes of config.toml
    .venv/bin/python scripts/mutation/run.py --quick              # a few mutants per module (minutes)
    .venv/bin/python scripts/mutation/run.py --groups metrics,cache --label after
    .venv/bin/python scripts/mutation/run.py --report-only        # rewrite docs/mutation-report.txt from results

For each group of ``config.toml`` the runner

1. copies ``src/``, ``tests/`` and ``pyproject.toml`` of the working tree into ``.mutation/work/<group>``
   (mutmut works on that copy: the repository's own files are never touched, and edits made elsewhere
   while it runs do not reach it), and writes mutmut's ``setup.cfg`` there: the group's files, its test
   files (so a mutant runs only tests of its own module, and among them only those that call the
   mutated function), a per-mutant timeout and the lines never mutated;
2. lists every mutant of the group's files (mutmut's own generator), keeps those of the group's
   functions, and takes a seeded random sample per module;
3. runs ``mutmut run --max-children <jobs> <sampled mutants>`` there;
4. reads each mutant's outcome (killed, survived, timeout, no tests, ...) and the diff of each survivor,
   and writes them to ``scripts/mutation/results/<label>.json``.

Survivors are then matched against ``survivors.toml`` (a survivor judged equivalent or accepted, with
its reason, keyed by module, function and the changed lines, so it survives renumbering), and
``docs/mutation-report.txt`` is written from the ``before`` and ``after`` results: per module the
mutants, killed, survived, timed out and the killed fraction over the non-equivalent mutants. Its last
line is ``killed_fraction=<f>`` over all modules of the newest results.

The sampled run takes about 25 minutes on 2 cores (too slow for CI); ``--quick`` a few minutes.
"""

from __future__ import annotations

import argparse
import datetime as dt
import fnmatch
import json
import os
import platform
import random
import re
import shlex
import shutil
import subprocess
import sys
import time
import tomllib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
CONFIG = HERE / "config.toml"
SURVIVORS = HERE / "survivors.toml"
RESULTS = HERE / "results"
WORK = ROOT / ".mutation" / "work"
REPORT = ROOT / "docs" / "mutation-report.txt"

#: outcomes that count as caught: the tests failed, or the mutant ran past its time limit
CAUGHT = ("killed", "timeout")


@dataclass(frozen=True)
class Group:
    """One mutmut run: the files it mutates, the functions kept, the tests its mutants run."""

    name: str
    files: tuple[str, ...]
    functions: tuple[str, ...]
    tests: tuple[str, ...]
    sample: int
    quick_sample: int


def load_config(path: Path = CONFIG) -> tuple[dict[str, Any], list[Group]]:
    """The ``[run]`` table and the groups of ``config.toml``, in file order."""
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    groups = [
        Group(
            name=name,
            files=tuple(g["files"]),
            functions=tuple(g.get("functions", ("*",))),
            tests=tuple(g["tests"]),
            sample=int(g["sample"]),
            quick_sample=int(g["quick_sample"]),
        )
        for name, g in data["groups"].items()
    ]
    return data["run"], groups


def module_of(path: str) -> str:
    """``src/miaudit/metrics.py`` -> ``miaudit.metrics`` (mutmut's module names)."""
    return path.removeprefix("src/").removesuffix(".py").replace("/", ".")


def function_of(mutant: str) -> str:
    """mutmut's function key of a mutant: ``miaudit.metrics.x_auc__mutmut_3`` -> ``x_auc``."""
    return mutant.partition("__mutmut_")[0].rpartition(".")[2]


def expand_tests(patterns: tuple[str, ...], root: Path) -> list[str]:
    """Test files and folders matched by the group's globs, relative to ``root``, in order, no repeats."""
    out: list[str] = []
    for pattern in patterns:
        for p in sorted(root.glob(pattern)):
            rel = p.relative_to(root).as_posix()
            if rel not in out:
                out.append(rel)
    return out


# --------------------------------------------------------------------------------------------------
# The work copy


IGNORE_NAMES = ("__pycache__", "*.pyc", ".pytest_cache", ".hypothesis")
IGNORE = shutil.ignore_patterns(*IGNORE_NAMES)


def prepare(group: Group, run: dict[str, Any], *, keep_src: bool = False, own_tests: bool = True) -> Path:
    """A copy of the project for ``group`` under .mutation/work, with mutmut's setup.cfg.

    With ``keep_src`` the group's earlier copy of ``src/`` (and its mutants) is kept and only the tests
    are refreshed from the working tree: the earlier run's mutants are then the same mutants. Without
    ``own_tests`` the tests written to kill mutants (``tests/**/test_mutants_*.py``) are left out: the
    score before them.
    """
    work = WORK / group.name
    if keep_src:
        if not (work / "mutants").is_dir():
            raise SystemExit(f"--rerun-survivors: no earlier run of group {group.name} in {work}; run it first")
        shutil.rmtree(work / "tests")
        shutil.rmtree(work / "mutants" / "tests", ignore_errors=True)
    else:
        if work.exists():
            shutil.rmtree(work)
        work.mkdir(parents=True)
        shutil.copytree(ROOT / "src", work / "src", ignore=IGNORE)
    ignore = IGNORE if own_tests else shutil.ignore_patterns(*IGNORE_NAMES, "test_mutants_*.py")
    shutil.copytree(ROOT / "tests", work / "tests", ignore=ignore)
    shutil.copy2(ROOT / "pyproject.toml", work / "pyproject.toml")
    tests = expand_tests(group.tests, work)
    if not tests:
        raise SystemExit(f"group {group.name}: no test file matches {list(group.tests)}; fix config.toml")

    def lines(values: list[str]) -> str:
        return "".join(f"\n    {v}" for v in values)

    cfg = (
        "[mutmut]\n"
        "source_paths = src\n"
        f"only_mutate = {lines(list(group.files))}\n"
        f"pytest_add_cli_args_test_selection = {lines(tests)}\n"
        f"pytest_add_cli_args = {lines(list(run['pytest_args']))}\n"
        f"do_not_mutate_patterns = {lines(list(run['do_not_mutate_patterns']))}\n"
        # torch is not fork-safe: the mutants are forked from a server that never ran a test
        "process_isolation = forkserver\n"
        f"timeout_multiplier = {float(run['timeout_multiplier'])}\n"
        f"timeout_constant = {float(run['timeout_constant'])}\n"
        "use_git_change_detection = false\n"
    )
    (work / "setup.cfg").write_text(cfg, encoding="utf-8")
    return work


def mutmut_env() -> dict[str, str]:
    """The environment of the mutmut processes: one OpenMP/BLAS thread (2 cores, shared; the tests' conftest
    still sets PyTorch's own thread count) and a fixed hash seed."""
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", PYTHONHASHSEED="0")
    env.pop("MUTANT_UNDER_TEST", None)
    return env


def helper(work: Path, command: str, payload: Any) -> Any:
    """Run one of this script's helper commands inside ``work`` (mutmut reads its config from the cwd)."""
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--helper", command],
        cwd=work,
        input=json.dumps(payload),
        capture_output=True,
        text=True,
        env=mutmut_env(),
        check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"helper {command} failed in {work}:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _helper_main(command: str) -> None:
    """Helper commands, run with the work copy as cwd; JSON in on stdin, JSON out as the last stdout line."""
    payload = json.loads(sys.stdin.read())
    if command == "list":
        from mutmut.mutation.file_mutation import mutate_file_contents
        from mutmut.utils.format_utils import get_mutant_name

        out: dict[str, list[str]] = {}
        for f in payload:
            p = Path(f)
            mutated = mutate_file_contents(f, p.read_text(encoding="utf-8"))
            out[f] = [get_mutant_name(p, n) for n in mutated.mutant_names]
        print(json.dumps(out))
    elif command == "diffs":
        from mutmut.mutation.diff_apply import get_diff_for_mutant

        diffs = {}
        for name, path in payload:
            diffs[name] = get_diff_for_mutant(name, path=path)
        print(json.dumps(diffs))
    else:
        raise SystemExit(f"unknown helper command {command!r}")


# --------------------------------------------------------------------------------------------------
# Sampling, running, reading outcomes


def sample_mutants(group: Group, listed: dict[str, list[str]], *, seed: int, size: int) -> dict[str, dict[str, Any]]:
    """Per module: how many mutants its kept functions have and the seeded sample of them to run."""
    out = {}
    for f in group.files:
        module = module_of(f)
        eligible = sorted(m for m in listed[f] if any(fnmatch.fnmatchcase(function_of(m), p) for p in group.functions))
        rng = random.Random(f"{seed}:{module}")
        chosen = eligible if size >= len(eligible) else sorted(rng.sample(eligible, size))
        out[module] = {"path": f, "eligible": len(eligible), "sampled": chosen}
    return out


def run_group(
    group: Group,
    run: dict[str, Any],
    *,
    quick: bool,
    jobs: int,
    log: Path,
    earlier: dict[str, Any] | None = None,
    collect: bool = False,
    own_tests: bool = True,
) -> dict[str, Any]:
    """Prepare, sample, run mutmut and read the outcomes of one group.

    With ``earlier`` (this group's results of an earlier run), only that run's uncaught mutants are run
    again, on the same copy of the sources, against the current tests; its caught mutants keep their
    outcome (adding tests cannot let a caught mutant pass).
    """
    if collect:
        work = WORK / group.name
        if not (work / "mutants").is_dir():
            raise SystemExit(f"--collect: no earlier run of group {group.name} in {work}")
    else:
        work = prepare(group, run, keep_src=earlier is not None, own_tests=own_tests)
    if earlier is None:
        listed = helper(work, "list", list(group.files))
        size = group.quick_sample if quick else group.sample
        modules = sample_mutants(group, listed, seed=int(run["seed"]), size=size)
        names = [m for info in modules.values() for m in info["sampled"]]
    else:
        modules = {
            module: {k: info[k] for k in ("path", "eligible", "sampled")} for module, info in earlier["modules"].items()
        }
        names = [m for info in earlier["modules"].values() for m in info["diffs"]]
        for module, info in modules.items():
            info["carried"] = {m: s for m, s in earlier["modules"][module]["outcome"].items() if s in CAUGHT}
        if not names:
            for info in modules.values():
                info["outcome"], info["diffs"] = info.pop("carried"), {}
            return {"group": group.name, "tests": expand_tests(group.tests, work), "seconds": 0.0, "modules": modules}
    mutmut = Path(sys.executable).with_name("mutmut")
    cmd = [str(mutmut), "run", "--max-children", str(jobs), *names]
    if collect:
        returncode, seconds = 0, float((work / "seconds.txt").read_text(encoding="utf-8"))
    else:
        t0 = time.perf_counter()
        with log.open("a", encoding="utf-8") as fh:
            fh.write(f"\n===== group {group.name}: {len(names)} mutants, {dt.datetime.now().isoformat()}\n")
            fh.flush()
            proc = subprocess.run(cmd, cwd=work, stdout=fh, stderr=subprocess.STDOUT, env=mutmut_env(), check=False)
        seconds, returncode = time.perf_counter() - t0, proc.returncode
        (work / "seconds.txt").write_text(f"{seconds:.1f}\n", encoding="utf-8")
    if returncode != 0:
        tail = log.read_text(encoding="utf-8", errors="replace")[-3000:]
        print(f"[mutation] mutmut failed for group {group.name} (exit {returncode}); see {log}:\n{tail}")
        return {
            "group": group.name,
            "error": f"mutmut exit {returncode}",
            "seconds": round(seconds, 1),
            "tests": expand_tests(group.tests, work),
            "modules": {},
        }
    from mutmut.stats import status_by_exit_code

    survivors_to_diff = []
    for info in modules.values():
        meta = json.loads((work / "mutants" / (info["path"] + ".meta")).read_text(encoding="utf-8"))
        codes = meta["exit_code_by_key"]
        carried = info.pop("carried", {})
        info["outcome"] = {m: carried.get(m) or status_by_exit_code[codes.get(m)] for m in info["sampled"]}
        survivors_to_diff += [(m, info["path"]) for m, s in info["outcome"].items() if s not in CAUGHT]
    diffs = helper(work, "diffs", survivors_to_diff) if survivors_to_diff else {}
    for info in modules.values():
        info["diffs"] = {m: diffs[m] for m, s in info["outcome"].items() if s not in CAUGHT}
    return {
        "group": group.name,
        "tests": expand_tests(group.tests, work),
        "seconds": round(seconds, 1),
        "modules": modules,
    }


# --------------------------------------------------------------------------------------------------
# Survivors: equivalent or accepted


def changed_lines(diff: str) -> tuple[str, ...]:
    """The removed and added lines of a mutant's diff, stripped: what identifies the mutation."""
    out = []
    for line in diff.splitlines():
        if line.startswith(("---", "+++")):
            continue
        if line.startswith(("-", "+")):
            out.append(line[0] + " " + line[1:].strip())
    return tuple(out)


def load_survivors(path: Path = SURVIVORS) -> list[dict[str, Any]]:
    """The judged survivors: module, function, mutation (changed lines), kind and reason."""
    if not path.exists():
        return []
    entries = tomllib.loads(path.read_text(encoding="utf-8")).get("survivor", [])
    for e in entries:
        if e["kind"] not in ("equivalent", "accepted"):
            raise SystemExit(f"survivors.toml: kind must be equivalent or accepted, got {e['kind']!r}")
        e["lines"] = tuple(line.strip() for line in e["mutation"].strip().splitlines())
        e["lines"] = tuple(line[0] + " " + line[1:].strip() for line in e["lines"])
    return entries


def judge(module: str, mutant: str, diff: str, survivors: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The survivors.toml entry for this surviving mutant, if any."""
    lines = changed_lines(diff)
    for e in survivors:
        if e["module"] == module and fnmatch.fnmatchcase(function_of(mutant), e["function"]) and e["lines"] == lines:
            return e
    return None


def tally(result: dict[str, Any], survivors: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per module: counts of outcomes, equivalent and accepted survivors, and the killed fraction."""
    rows = {}
    for group in result["groups"]:
        for module, info in group["modules"].items():
            c = Counter(info["outcome"].values())
            equivalent = accepted = 0
            unjudged = []
            for m, diff in info["diffs"].items():
                e = judge(module, m, diff, survivors)
                if e is None:
                    unjudged.append(m)
                elif e["kind"] == "equivalent":
                    equivalent += 1
                else:
                    accepted += 1
            n = len(info["outcome"])
            caught = c["killed"] + c["timeout"]
            denominator = n - equivalent
            rows[module] = {
                "eligible": info["eligible"],
                "mutants": n,
                "killed": c["killed"],
                "timeout": c["timeout"],
                "survived": n - caught,
                "no_tests": c["no tests"],
                "equivalent": equivalent,
                "accepted": accepted,
                "unjudged": unjudged,
                "killed_fraction": caught / denominator if denominator else 1.0,
            }
    return rows


# --------------------------------------------------------------------------------------------------
# Report


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return platform.processor() or "unknown"
    for line in out.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def mutmut_version() -> str:
    from importlib.metadata import version

    return version("mutmut")


def _table(rows: dict[str, dict[str, Any]]) -> list[str]:
    head = (
        f"{'module':<34} {'eligible':>8} {'mutants':>7} {'killed':>6} {'timeout':>7} {'survived':>8} "
        f"{'equiv':>5} {'accepted':>8} {'killed_fraction':>15}"
    )
    out = [head, "-" * len(head)]
    total = Counter()
    for module, r in rows.items():
        out.append(
            f"{module:<34} {r['eligible']:>8} {r['mutants']:>7} {r['killed']:>6} {r['timeout']:>7} "
            f"{r['survived']:>8} {r['equivalent']:>5} {r['accepted']:>8} {r['killed_fraction']:>15.3f}"
        )
        for k in ("eligible", "mutants", "killed", "timeout", "survived", "equivalent", "accepted"):
            total[k] += r[k]
    den = total["mutants"] - total["equivalent"]
    frac = (total["killed"] + total["timeout"]) / den if den else 1.0
    out.append("-" * len(head))
    out.append(
        f"{'all':<34} {total['eligible']:>8} {total['mutants']:>7} {total['killed']:>6} {total['timeout']:>7} "
        f"{total['survived']:>8} {total['equivalent']:>5} {total['accepted']:>8} {frac:>15.3f}"
    )
    return out


def overall_fraction(rows: dict[str, dict[str, Any]]) -> float:
    mutants = sum(r["mutants"] for r in rows.values())
    caught = sum(r["killed"] + r["timeout"] for r in rows.values())
    den = mutants - sum(r["equivalent"] for r in rows.values())
    return caught / den if den else 1.0


def write_report(path: Path = REPORT) -> None:
    """docs/mutation-report.txt from results/before.json and results/after.json (whichever exist)."""
    survivors = load_survivors()
    runs = [(label, RESULTS / f"{label}.json") for label in ("before", "after")]
    runs = [(label, json.loads(p.read_text(encoding="utf-8"))) for label, p in runs if p.exists()]
    if not runs:
        raise SystemExit(f"no results in {RESULTS}: run the mutation tests first (make mutation)")
    out = [
        "Mutation testing of the modules whose numbers users read (generated by scripts/mutation/run.py;",
        "what it does and how to read it: docs/mutation.md).",
        "",
        "A mutant is one small change to one function (an operator, a constant, an argument, a return value).",
        "killed: a test failed; timeout: it ran past its limit (counted as caught); survived: every test passed",
        "(includes 'no tests': no test of its module calls the function). killed_fraction = (killed + timeout)",
        "/ (mutants - equivalent). eligible: the mutants of the module's audited functions; mutants: the",
        "seeded random sample of them that was run (the whole set takes hours on 2 cores).",
        "before: the project's tests without tests/**/test_mutants_*.py (the tests written for the survivors);",
        "after: every test; a run with --rerun-survivors runs only the earlier run's survivors again, on the",
        "same copy of the sources, and carries its caught mutants over (added tests cannot revive them).",
    ]
    last_rows: dict[str, dict[str, Any]] = {}
    for label, result in runs:
        rows = tally(result, survivors)
        last_rows = rows
        out += [
            "",
            f"== {label}: {result['date']}",
            f"tool: mutmut {result['mutmut']}; python {result['python']}; CPU: {result['cpu']}",
            *(f"command: {i['command']}  ({i['started']}, {i['seconds'] / 60:.1f} min)" for i in result["invocations"]),
            f"seed {result['seed']}, {result['jobs']} parallel mutants, per-mutant wall limit "
            f"{result['timeout_multiplier']} x (tests' duration + {result['timeout_constant']} s), "
            f"{result['seconds'] / 60:.1f} min in all",
            "",
            *_table(rows),
        ]
        for group in result["groups"]:
            if "error" in group:
                out.append(f"group {group['group']} did not finish: {group['error']} (its modules are missing above)")
        unjudged = [m for r in rows.values() for m in r["unjudged"]]
        later = {m: o for g in runs[-1][1]["groups"] for i in g["modules"].values() for m, o in i["outcome"].items()}
        n_survivors = sum(len(i["diffs"]) for g in result["groups"] for i in g["modules"].values())
        out += ["", f"survivors of the {label} run: {n_survivors} ({len(unjudged)} not judged equivalent or accepted)"]
        for group in result["groups"]:
            for module, info in group["modules"].items():
                for m, diff in info["diffs"].items():
                    e = judge(module, m, diff, survivors)
                    kind = e["kind"] if e else "not judged"
                    then = f", {runs[-1][0]}: {later.get(m, 'not run')}" if label != runs[-1][0] else ""
                    change = " | ".join(changed_lines(diff))
                    out.append(f"  [{kind}] {m} ({info['outcome'][m]}{then}): {change}")
    fractions = ", ".join(f"{label} {overall_fraction(tally(r, survivors)):.4f}" for label, r in runs)
    out += ["", f"killed fraction over all modules: {fractions}", f"killed_fraction={overall_fraction(last_rows):.4f}"]
    path.write_text("\n".join(out) + "\n", encoding="utf-8")
    print(f"wrote {path}")


# --------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few mutants per module (config quick_sample)")
    parser.add_argument("--groups", default="", help="comma-separated group names (default: all)")
    parser.add_argument("--label", default="", help="results name: before, after (default: after; quick)")
    parser.add_argument("--jobs", type=int, default=0, help="parallel mutants (default: config [run] jobs)")
    parser.add_argument("--seed", type=int, default=None, help="sampling seed (default: config [run] seed)")
    parser.add_argument("--report-only", action="store_true", help="only rewrite the report from results")
    parser.add_argument(
        "--rerun-survivors",
        default="",
        metavar="LABEL",
        help="run again only the uncaught mutants of results/LABEL.json, on that run's copy of the sources",
    )
    parser.add_argument(
        "--collect",
        action="store_true",
        help="run nothing: read the outcomes of each group's last run in .mutation/work (after an interruption)",
    )
    parser.add_argument(
        "--without-mutant-tests",
        action="store_true",
        help="leave out tests/**/test_mutants_*.py (the tests written to kill mutants): the score before them",
    )
    parser.add_argument("--helper", default="", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.helper:
        _helper_main(args.helper)
        return
    if args.report_only:
        write_report()
        return
    run, groups = load_config()
    if args.seed is not None:
        run["seed"] = args.seed
    known = {g.name for g in groups}
    chosen = [s for s in args.groups.split(",") if s]
    if unknown := sorted(set(chosen) - known):
        raise SystemExit(f"unknown group(s) {unknown}; choose from {sorted(known)}")
    selected = [g for g in groups if not chosen or g.name in chosen]
    label = args.label or ("quick" if args.quick else "after")
    if not re.fullmatch(r"[A-Za-z0-9_-]+", label):
        raise SystemExit(f"--label must be letters, digits, - or _; got {label!r}")
    jobs = args.jobs or int(run["jobs"])
    RESULTS.mkdir(parents=True, exist_ok=True)
    log = ROOT / ".mutation" / f"{label}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("", encoding="utf-8")
    out_path = RESULTS / f"{label}.json"
    # a partial run (some groups) updates those groups in an existing results file
    result: dict[str, Any] = json.loads(out_path.read_text(encoding="utf-8")) if out_path.exists() else {}
    previous = {g["group"]: g for g in result.get("groups", [])} if chosen else {}
    earlier: dict[str, Any] = {}
    if args.rerun_survivors:
        source = RESULTS / f"{args.rerun_survivors}.json"
        if not source.exists():
            raise SystemExit(f"--rerun-survivors {args.rerun_survivors}: {source} does not exist; run that first")
        earlier = {g["group"]: g for g in json.loads(source.read_text(encoding="utf-8"))["groups"]}
        if label == args.rerun_survivors:
            raise SystemExit("--rerun-survivors needs another --label than the run it reruns (e.g. --label after)")
    t0 = time.perf_counter()
    started_at = dt.datetime.now().astimezone().isoformat(timespec="seconds")
    for group in selected:
        print(f"[mutation] {group.name}: starting", flush=True)
        if args.rerun_survivors and group.name not in earlier:
            raise SystemExit(f"group {group.name} is not in results/{args.rerun_survivors}.json; run it first")
        previous[group.name] = run_group(
            group,
            run,
            quick=args.quick,
            jobs=jobs,
            log=log,
            earlier=earlier.get(group.name),
            collect=args.collect,
            own_tests=not args.without_mutant_tests,
        )
        r = previous[group.name]
        n = sum(len(i["sampled"]) for i in r["modules"].values())
        s = sum(len(i["diffs"]) for i in r["modules"].values())
        print(f"[mutation] {group.name}: {n} mutants, {s} not caught, {r['seconds']:.0f} s", flush=True)
        # written after every group, so an interrupted run keeps what it finished
        result = _results(result, previous, groups, run, jobs, argv, partial=bool(chosen), t0=t0, started_at=started_at)
        out_path.write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"[mutation] wrote {out_path}")
    if label in ("before", "after"):
        write_report()


def _results(
    result: dict[str, Any],
    previous: dict[str, Any],
    groups: list[Group],
    run: dict[str, Any],
    jobs: int,
    argv: list[str] | None,
    *,
    partial: bool,
    t0: float,
    started_at: str,
) -> dict[str, Any]:
    """The results record: the groups run so far (with those of an earlier partial run) and how they ran."""
    order = [g.name for g in groups]
    now = dt.datetime.now().astimezone().isoformat(timespec="seconds")
    command = " ".join([".venv/bin/python scripts/mutation/run.py", *(shlex.quote(a) for a in (argv or sys.argv[1:]))])
    # a partial run keeps the invocations that ran the other groups; this one's entry is replaced
    earlier = [i for i in result.get("invocations", []) if i["started"] != started_at] if partial else []
    this = {"started": started_at, "command": command, "seconds": round(time.perf_counter() - t0, 1)}
    invocations = [*earlier, this]
    result = {
        "date": now,
        "cpu": cpu_model(),
        "python": platform.python_version(),
        "mutmut": mutmut_version(),
        "invocations": invocations,
        "seed": run["seed"],
        "jobs": jobs,
        "timeout_multiplier": run["timeout_multiplier"],
        "timeout_constant": run["timeout_constant"],
        "seconds": round(sum(g["seconds"] for g in previous.values()), 1),
        "groups": sorted(previous.values(), key=lambda g: order.index(g["group"])),
    }
    return result


if __name__ == "__main__":
    main()
