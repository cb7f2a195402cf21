#!/usr/bin/env bash
# Makes .venv-baselines at the repository root: numpy plus SPERR and TTHRESH compiled to
# WebAssembly (numcodecs-wasm-*, run by wasmtime), for benchmarks/rd.py's baseline columns.
#
# Kept out of the main .venv on purpose: numcodecs 0.17 (which the wasm codecs need) fails
# to import beside zfpy, whose version string carries "post0". benchmarks/rd.py runs
# benchmarks/wasm_codecs.py with this venv's python in a subprocess.
#
#     bash benchmarks/setup_baselines.sh        # idempotent: a second run only checks
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
VENV="$ROOT/.venv-baselines"
PYTHON="${PYTHON:-python3}"
PACKAGES=(numpy numcodecs-wasm-sperr numcodecs-wasm-tthresh)

if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
fi
if ! "$VENV/bin/python" -c "import numcodecs_wasm_sperr, numcodecs_wasm_tthresh" 2>/dev/null; then
    "$VENV/bin/python" -m pip install --quiet --upgrade pip
    "$VENV/bin/python" -m pip install --quiet "${PACKAGES[@]}"
fi
# a round trip through both codecs, so a broken wasmtime shows here and not mid-benchmark
"$VENV/bin/python" "$ROOT/benchmarks/wasm_codecs.py" --self-test
"$VENV/bin/python" -m pip list 2>/dev/null | grep -iE "^(numpy|numcodecs|wasmtime)" || true
