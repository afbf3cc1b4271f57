"""Audit a PyTorch CNN on scikit-learn's digits, in one command.

    python examples/audit_cnn.py [--out runs/example-cnn]

It trains the CNN of ``examples/digits_cnn.py`` on a third of the digits for 60 epochs, saves its weights
as safetensors (no pickle) and the images as an NPZ (``X`` of shape (n, 8, 8), ``y``, ``ids``) with the member ids in a
CSV, then runs the audit a user would run, with shadow models of the same CNN (``--factory``):

    miaudit audit --model OUT/inputs/cnn.safetensors --factory examples.digits_cnn:make_cnn \
        --input-shape 1,8,8 --data OUT/inputs/digits.npz --members OUT/inputs/members.csv --out OUT/audit
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def make_inputs(folder: Path, *, seed: int = 0, epochs: int = 60) -> list[str]:
    """Write cnn.safetensors, digits.npz and members.csv into ``folder``; return the audit's arguments."""
    import torch
    from safetensors.torch import save_file
    from sklearn.datasets import load_digits

    sys.path.insert(0, str(ROOT))
    from examples.digits_cnn import train_cnn

    folder.mkdir(parents=True, exist_ok=True)
    digits = load_digits()
    X = (digits.data / 16.0).astype(np.float32)
    y = digits.target.astype(np.int64)
    rng = np.random.default_rng(seed)
    member = np.zeros(len(y), dtype=bool)
    member[rng.choice(len(y), size=len(y) // 3, replace=False)] = True
    model = train_cnn(
        torch.from_numpy(X[member]).view(-1, 1, 8, 8), torch.from_numpy(y[member]), epochs=epochs, seed=seed
    )
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "cnn.safetensors"))
    ids = np.array([f"digit-{i:04d}" for i in range(len(y))])
    np.savez(folder / "digits.npz", X=X.reshape(-1, 8, 8), y=y, ids=ids)  # images: the report draws them
    (folder / "members.csv").write_text("id\n" + "\n".join(ids[member]) + "\n")
    return [
        "--model", str(folder / "cnn.safetensors"),
        "--factory", "examples.digits_cnn:make_cnn",
        "--input-shape", "1,8,8",
        "--data", str(folder / "digits.npz"),
        "--members", str(folder / "members.csv"),
    ]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("runs/example-cnn"))
    ap.add_argument("--seed", type=int, default=0)
    args, extra = ap.parse_known_args(argv)
    audit_args = make_inputs(args.out / "inputs", seed=args.seed)
    cmd = [sys.executable, "-m", "miaudit", "audit", *audit_args, "--out", str(args.out / "audit"), *extra]
    print("$", shlex.join(["miaudit", *cmd[3:]]), flush=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    return subprocess.call(cmd, env=env)


if __name__ == "__main__":
    raise SystemExit(main())
