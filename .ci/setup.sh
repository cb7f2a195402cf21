#!/usr/bin/env bash
# Idempotent setup of a fresh machine: a venv at .venv holding neuralvol (editable, with
# the `neuralvol` command), CPU PyTorch, VTK, pyvista and the test tools.
#   bash .ci/setup.sh          # codec, VTK layer, pyvista, demo
#   bash .ci/setup.sh --all    # plus ParaView (apt) and its own venv, for the whole test suite
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
pip=(.venv/bin/python -m pip install -q --disable-pip-version-check)
# torch first and pinned: 2.13.0 is a CPU wheel on this machine's disk; an unpinned
# torch would pull a multi-GB CUDA build.
.venv/bin/python -c "import torch" 2>/dev/null || "${pip[@]}" torch==2.13.0
"${pip[@]}" -e ".[pyvista,test,bench,large]"
# A C++ compiler for neuralvol/kernels (fused hash-grid kernel, compiled on first use;
# without one the code falls back to pure PyTorch, and the kernel tests would skip).
if ! command -v c++ >/dev/null 2>&1 && ! command -v g++ >/dev/null 2>&1; then
    SUDO=""; if [ "$(id -u)" != "0" ] && command -v sudo >/dev/null 2>&1; then SUDO="sudo"; fi
    $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends g++
fi
if [ "${1:-}" = "--all" ]; then
    bash .ci/setup-paraview.sh
fi
