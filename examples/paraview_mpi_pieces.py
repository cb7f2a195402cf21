"""Decode a ``.nvc`` file by pieces on several MPI ranks.

    mpiexec -n 2 pvbatch --symmetric examples/paraview_mpi_pieces.py head.nvc

Each rank's reader is asked for its own piece (ParaView turns the piece into an index
extent because the reader declares CAN_PRODUCE_SUB_EXTENT) and decodes only that.
(As root, OpenMPI also wants OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1.)
Environment: ``PV_VENV=.venv-paraview PYTHONPATH=plugin/shim`` (docs/PARAVIEW.md).
"""
import sys
import time

from _paraview_setup import load_neuralvol_plugin
from paraview import servermanager as sm
from paraview.simple import OpenDataFile

load_neuralvol_plugin(globals())
controller = sm.vtkProcessModule.GetProcessModule().GetGlobalController()
rank, size = controller.GetLocalProcessId(), controller.GetNumberOfProcesses()

reader = OpenDataFile(sys.argv[1])
t0 = time.perf_counter()
reader.UpdatePipeline()
seconds = time.perf_counter() - t0
algo = reader.GetClientSideObject()
print(f"rank {rank}/{size}: decoded extent {algo.GetLastDecodedExtent()}, "
      f"{algo.GetNumberOfDecodedPoints()} points in {seconds:.2f} s", flush=True)
