"""Decode a region of a ``.nvc`` file at double resolution and save it as ``.vti``.

    pvpython examples/paraview_decode_region.py head.nvc region.vti [x0 x1 y0 y1 z0 z1]

The region is an index extent of the *double-resolution* grid; only that box is decoded.
Environment: ``PV_VENV=.venv-paraview PYTHONPATH=plugin/shim`` (docs/PARAVIEW.md).
"""
import sys

from _paraview_setup import load_neuralvol_plugin
from paraview.simple import SaveData

path, out = sys.argv[1], sys.argv[2]
load_neuralvol_plugin(globals())

reader = NeuralVolumeReader(FileName=path, ResolutionScale=2.0)  # noqa: F821
if len(sys.argv) >= 9:
    roi = [int(v) for v in sys.argv[3:9]]
else:  # the central eighth of the volume
    import neuralvol as nv  # the core (from PV_VENV)
    dims = [(n - 1) * 2 + 1 for n in nv.open(path).dims]
    roi = []
    for n in dims:
        roi += [n // 4, n // 4 + n // 2 - 1]
reader.RegionOfInterest = roi
reader.UpdatePipeline()
algo = reader.GetClientSideObject()
print(f"decoded extent {algo.GetLastDecodedExtent()} "
      f"({algo.GetNumberOfDecodedPoints()} points)")
SaveData(out, proxy=reader)
print(f"wrote {out}")
