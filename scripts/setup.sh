#!/usr/bin/env bash
# One idempotent set-up for everything webinfer's commands and tests need:
# Debian packages, the .venv with the dev tools, and the pinned assets
# (default model, Pyodide dist, test vectors, corpora) in the cache.
# A second run installs and downloads nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
log() { echo "[setup] $*"; }

# ---- Debian packages (chromium for browser tests, lavapipe for native WebGPU,
# clang/lld for the WASM kernels, firefox-esr for the cross-browser test)
APT_PKGS=(chromium chromium-driver mesa-vulkan-drivers clang lld firefox-esr)
missing=()
for p in "${APT_PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  if [ "$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi
  log "apt-get install ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# ---- Python virtual environment (3.11; the package also runs on 3.12 = Pyodide's)
PY=${WEBINFER_PYTHON:-}
if [ -z "$PY" ]; then
  for c in python3.11 python3.12 python3; do
    if command -v "$c" >/dev/null && "$c" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then PY=$c; break; fi
  done
fi
[ -n "$PY" ] || { echo "[setup] need Python >= 3.11" >&2; exit 1; }
if [ ! -x .venv/bin/python ]; then
  log "creating .venv with $PY"
  "$PY" -m venv .venv
fi
stamp=.venv/.webinfer-deps
want=$(cat pyproject.toml scripts/requirements-dev.txt | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  log "installing Python packages into .venv"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -r scripts/requirements-dev.txt
  .venv/bin/python -m pip install -q --no-deps -e .
  echo "$want" > "$stamp"
fi

# ---- pinned assets, sha256-verified
.venv/bin/python scripts/fetch_assets.py
.venv/bin/python scripts/fetch_browser_assets.py   # the Pyodide test dist for pytest-pyodide

# ---- puppeteer-core (npm, integrity-pinned by package-lock.json) drives Firefox over WebDriver BiDi
ff=tests/browser/firefox
if ! cmp -s "$ff/package-lock.json" "$ff/node_modules/.webinfer-lock" 2>/dev/null; then
  log "npm ci in $ff"
  (cd "$ff" && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error)
  cp "$ff/package-lock.json" "$ff/node_modules/.webinfer-lock"
fi
