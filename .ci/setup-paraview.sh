#!/usr/bin/env bash
# Install Debian's ParaView (5.11 on bookworm) and the venv that ParaView's own Python
# uses for neuralvol's plugin (torch CPU, numpy<2, never the pip vtk wheel).
# Idempotent: safe to run again; skips what is already there.
#
#   bash .ci/setup-paraview.sh            # apt packages + .venv-paraview
#   NV_PV_VENV=/some/dir bash .ci/setup-paraview.sh   # put the venv elsewhere
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${NV_PV_VENV:-$ROOT/.venv-paraview}"
SUDO=""
if [ "$(id -u)" != "0" ] && command -v sudo >/dev/null 2>&1; then SUDO="sudo"; fi

# 1. apt: ParaView with its Python, an X server for headless rendering, MPI for pvbatch.
PKGS="paraview python3-paraview xvfb xauth openmpi-bin python3-venv"
missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  echo "setup-paraview: apt-get install$missing"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing
else
  echo "setup-paraview: apt packages already installed"
fi

# 2. The venv for ParaView's Python. It must be made by the interpreter ParaView embeds
#    (Debian's /usr/bin/python3, 3.11), so that compiled wheels (torch) match its ABI.
PY=/usr/bin/python3
# A venv made by another interpreter (pyenv's, a newer Debian's) is made again.
if [ ! -x "$VENV/bin/python" ] || ! grep -qx "home = $(dirname "$PY")" "$VENV/pyvenv.cfg" 2>/dev/null \
   || [ "$("$VENV/bin/python" -c 'import sys; print(sys.version)' 2>/dev/null)" != "$($PY -c 'import sys; print(sys.version)')" ]; then
  rm -rf "$VENV"
  $PY -m venv "$VENV"
fi
# torch pinned to the CPU build (a bare `torch` would pull the multi-GB CUDA build);
# numpy<2 because ParaView 5.11's numpy interface breaks on numpy 2.
if ! "$VENV/bin/python" -c 'import torch, numpy, sys; sys.exit(not (torch.__version__.startswith("2.13.0") and numpy.__version__ < "2"))' 2>/dev/null; then
  "$VENV/bin/python" -m pip install -q "torch==2.13.0" "numpy<2"
fi
# The pip vtk wheel must never be in this venv (two VTKs in one process crash).
if "$VENV/bin/python" -m pip show -q vtk >/dev/null 2>&1; then
  "$VENV/bin/python" -m pip uninstall -y -q vtk
fi
# neuralvol itself: a .pth file pointing at the checkout (site.addsitedir, which
# paraview.web.venv uses, honours .pth files); no build step, always the working tree.
SITE="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
echo "$ROOT" > "$SITE/neuralvol-checkout.pth"

# 3. The auto-load configuration (ParaView 5.11 wants an absolute plugin file name).
sed "s#@NEURALVOL_PLUGIN_DIR@#$ROOT/plugin#" "$ROOT/xml/neuralvol.plugins.xml.in" \
  > "$ROOT/xml/neuralvol.plugins.xml"

echo "setup-paraview: ParaView $(pvpython --version 2>/dev/null | tail -1 || echo '?'), venv $VENV ready"
echo "setup-paraview: use it with  PV_VENV=$VENV PYTHONPATH=$ROOT/plugin/shim PV_PLUGIN_PATH=$ROOT/plugin OMP_WAIT_POLICY=PASSIVE paraview"
