"""Compress one time step of a ``.vti`` series through the Neural Volume Writer.

    pvpython examples/paraview_compress_vti.py \
        ../shared/data/vti/viscous_fingers_run01_090.vti fingers.nvc [ratio] [seconds]

Environment: ``PV_VENV=.venv-paraview PYTHONPATH=plugin/shim`` (docs/PARAVIEW.md).
"""
import sys

from _paraview_setup import load_neuralvol_plugin
from paraview.simple import SaveData, XMLImageDataReader

src_path, out = sys.argv[1], sys.argv[2]
ratio = float(sys.argv[3]) if len(sys.argv) > 3 else 50.0
seconds = float(sys.argv[4]) if len(sys.argv) > 4 else 30.0

load_neuralvol_plugin(globals())
src = XMLImageDataReader(FileName=[src_path])
src.UpdatePipeline()
array = src.PointData.keys()[0]
# SaveData picks the Neural Volume Writer from the .nvc extension; the keywords are
# its properties (Target Ratio, Time Budget, Steps, Target PSNR, Device, Seed, ...).
SaveData(out, proxy=src, ArrayName=array, TargetRatio=ratio, TimeBudget=seconds)

import neuralvol as nv  # noqa: E402  (the core, from PV_VENV)
vol = nv.open(out)
print(f"{out}: {vol.array_name} {vol.dims} ratio {vol.ratio:.1f}, "
      f"PSNR {vol.training.psnr if vol.training.psnr is not None else float('nan'):.2f} dB")
