#!/usr/bin/env bash
# Installs everything miaudit needs on a fresh machine; safe to run again (it skips what is there).
#   - a virtual environment in .venv (override with VENV=...)
#   - torch 2.13.0 first (the CPU build), then the project and its dev tools, constrained to that torch
#   - the Fashion-MNIST files from Debian's package dataset-fashion-mnist, where missing
#   - Debian's chromium (the report's browser test), where /usr/bin/chromium is missing
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
EXTRAS=${EXTRAS:-dev}

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

FMNIST=/usr/share/datasets/fashion-mnist
if [ ! -f "$FMNIST/train-images-idx3-ubyte.gz" ] && [ -z "${MIAUDIT_DATA_DIR:-}" ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  if command -v apt-get >/dev/null 2>&1; then
    log "installing Debian package dataset-fashion-mnist"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 || {
      $SUDO apt-get update -q >/dev/null && $SUDO apt-get install -y -q dataset-fashion-mnist >/dev/null
    }
  else
    log "no apt-get here: run '$VENV/bin/miaudit data fetch' to download Fashion-MNIST into the cache"
  fi
fi
# Debian's chromium, for the report's browser test (tests/report/test_browser.py; it skips without it)
if [ ! -x /usr/bin/chromium ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  if command -v apt-get >/dev/null 2>&1; then
    log "installing Debian package chromium (headless browser for the report test)"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get install -y -q chromium >/dev/null 2>&1 || {
      $SUDO apt-get update -q >/dev/null && $SUDO apt-get install -y -q chromium >/dev/null
    } || log "could not install chromium: the report's browser test will be skipped"
  else
    log "no apt-get here: install Chromium as /usr/bin/chromium to run the report's browser test"
  fi
fi
log "done"
