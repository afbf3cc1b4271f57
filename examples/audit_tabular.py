"""Audit an overfitted random forest on a table, in one command.

    python examples/audit_tabular.py [--out runs/example-tabular]

It trains a random forest on half of scikit-learn's breast-cancer table (fully grown trees memorise their
training rows), saves the model with skops (no pickle), the table as a CSV with an ``id`` column and the
member ids as a CSV, then runs the audit a user would run on their own files:

    miaudit audit --model OUT/inputs/forest.skops --data OUT/inputs/data.csv \
        --members OUT/inputs/members.csv --trust sklearn.tree._tree.Tree --out OUT/audit
"""

from __future__ import annotations

import argparse
import csv
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np


def make_inputs(folder: Path, *, seed: int = 0) -> list[str]:
    """Write forest.skops, data.csv and members.csv into ``folder``; return the audit's arguments."""
    import skops.io
    from sklearn.datasets import load_breast_cancer
    from sklearn.ensemble import RandomForestClassifier

    folder.mkdir(parents=True, exist_ok=True)
    table = load_breast_cancer()
    X, y = table.data, table.target
    rng = np.random.default_rng(seed)
    member = np.zeros(len(y), dtype=bool)
    member[rng.choice(len(y), size=len(y) // 2, replace=False)] = True
    forest = RandomForestClassifier(n_estimators=100, bootstrap=False, max_features=None, random_state=seed)
    forest.fit(X[member], y[member])
    skops.io.dump(forest, folder / "forest.skops")
    ids = [f"patient-{i:03d}" for i in range(len(y))]
    with (folder / "data.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", *table.feature_names, "label"])
        for i in range(len(y)):
            w.writerow([ids[i], *map(repr, X[i].tolist()), int(y[i])])
    (folder / "members.csv").write_text("id\n" + "\n".join(np.asarray(ids)[member]) + "\n")
    return [
        "--model", str(folder / "forest.skops"),
        "--data", str(folder / "data.csv"),
        "--members", str(folder / "members.csv"),
        "--trust", "sklearn.tree._tree.Tree",  # skops names the types it does not trust by default
    ]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("runs/example-tabular"))
    ap.add_argument("--seed", type=int, default=0)
    args, extra = ap.parse_known_args(argv)
    audit_args = make_inputs(args.out / "inputs", seed=args.seed)
    cmd = [sys.executable, "-m", "miaudit", "audit", *audit_args, "--out", str(args.out / "audit"), *extra]
    print("$", shlex.join(["miaudit", *cmd[3:]]), flush=True)
    return subprocess.call(cmd)


if __name__ == "__main__":
    raise SystemExit(main())
