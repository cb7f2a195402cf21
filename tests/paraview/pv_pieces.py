"""Decode by pieces: ``mpiexec -n 2 pvbatch --symmetric pv_pieces.py PLUGIN FILE.nvc OUTDIR``.

Every rank runs this script (``--symmetric``), updates the reader for its own piece and,
after checking the values against the core's decode of the same region, writes
``RANK r/n DECODED x0 x1 y0 y1 z0 z1 POINTS k BRICKS b OK`` to ``OUTDIR/rank<r>.txt``.
A file per rank, because the ranks share one stdout and their lines can interleave
(CI once printed two reports run together on one line).
"""
import os
import sys

try:
    import paraview.web.venv  # noqa: F401
except ImportError:
    pass

import numpy as np
from paraview import servermanager as sm
from paraview.simple import LoadPlugin, OpenDataFile
from vtkmodules.util.numpy_support import vtk_to_numpy

import neuralvol as nv

plugin, path, outdir = sys.argv[1:4]
LoadPlugin(plugin, ns=globals())
controller = sm.vtkProcessModule.GetProcessModule().GetGlobalController()
rank, size = controller.GetLocalProcessId(), controller.GetNumberOfProcesses()

reader = OpenDataFile(path)
reader.UpdatePipeline()
algo = reader.GetClientSideObject()
out = algo.GetOutputDataObject(0)
ext = tuple(algo.GetLastDecodedExtent())
assert tuple(out.GetExtent()) == ext
nx, ny, nz = out.GetDimensions()
values = vtk_to_numpy(out.GetPointData().GetArray(nv.open(path).array_name)).reshape(nz, ny, nx)
assert np.array_equal(values, nv.open(path).decode(region=ext, compute="auto")), "piece values differ"
# a bricked file: how many of its bricks this rank evaluated
bricks = len(algo._models[0].decoded_bricks) if hasattr(algo._models[0], "decoded_bricks") else 1
report = (f"RANK {rank}/{size} DECODED {' '.join(map(str, ext))} POINTS "
          f"{algo.GetNumberOfDecodedPoints()} BRICKS {bricks} OK")
with open(os.path.join(outdir, f"rank{rank}.txt"), "w") as f:
    f.write(report + "\n")
print(report, flush=True)
