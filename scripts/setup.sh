#!/usr/bin/env bash
# Installs everything miaudit needs on a fresh machine; safe to run again (it skips what is there).
#   - a virtual environment in .venv (override with VENV=...)
#   - torch 2.13.0 first (the CPU build), then the project, its dev tools and every extra (EXTRAS, default dev,all:
#     Dask for --workers/--scheduler, skops/pyarrow/onnxruntime for audits, FastAPI/uvicorn/httpx for the prediction
#     service, Opacus for DP accounting), constrained to that torch
#   - the Fashion-MNIST files from Debian's package dataset-fashion-mnist, where missing
#   - Debian's chromium (the report's browser test), where /usr/bin/chromium is missing
#   - gcc (the training engine's compiled Adam step), where no C compiler is found; then builds it
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
EXTRAS=${EXTRAS:-dev,all}

log() { printf '[setup] %s\n' "$*"; }

if [ ! -x "$VENV/bin/python" ]; then
  log "creating virtual environment $VENV"
  "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)

if ! "$VENV/bin/python" -c 'import torch, sys; sys.exit(torch.__version__.split("+")[0] != "2.13.0")' 2>/dev/null; then
  log "installing torch 2.13.0 (CPU)"
  "${PIP[@]}" install -q torch==2.13.0
fi

stamp="$VENV/.miaudit-installed"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ constraints.txt -nt "$stamp" ]; then
  log "installing miaudit and its dependencies ($EXTRAS)"
  "${PIP[@]}" install -q -c constraints.txt -e ".[$EXTRAS]"
  touch "$stamp"
fi

# apt_install PACKAGE WHY: install a Debian package (as root or with sudo); 1 where it cannot be done
apt_install() {
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  command -v apt-get >/dev/null 2>&1 || return 1
  log "installing Debian package $1 ($2)"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get install -y -q "$1" >/dev/null 2>&1 || {
    $sudo apt-get update -q >/dev/null && $sudo apt-get install -y -q "$1" >/dev/null
  }
}

FMNIST=/usr/share/datasets/fashion-mnist
if [ ! -f "$FMNIST/train-images-idx3-ubyte.gz" ] && [ -z "${MIAUDIT_DATA_DIR:-}" ]; then
  apt_install dataset-fashion-mnist "the Fashion-MNIST files" ||
    log "no apt-get here: run '$VENV/bin/miaudit data fetch' to download Fashion-MNIST into the cache"
fi
# Debian's chromium, for the report's browser test (tests/report/test_browser.py; it fails in CI without it)
if [ ! -x /usr/bin/chromium ]; then
  apt_install chromium "headless browser for the report test" ||
    log "could not install chromium: install it as /usr/bin/chromium to run the report's browser test"
fi
# a C compiler, for the training engine's compiled Adam step (without one it uses PyTorch operations)
if ! command -v cc >/dev/null 2>&1 && ! command -v gcc >/dev/null 2>&1; then
  apt_install gcc "C compiler for the engine's native kernel" ||
    log "no C compiler: training uses PyTorch operations only (slower)"
fi
log "native kernel: $("$VENV/bin/python" -c 'from miaudit.training.native import native_status; print(native_status())' 2>&1 | tail -1)"
log "done"
