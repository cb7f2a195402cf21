"""Opening a `.nvc` in ParaView and fetching the image, against decoding it in the same process.

Runs under ParaView's own Python; ``benchmarks/speed.py`` starts it for each model it times
(the same environment as tests/test_paraview.py: ``PV_VENV`` and ``plugin/shim`` on the path):

    PV_VENV=$PWD/.venv-paraview PYTHONPATH=$PWD/plugin/shim \\
        pvpython benchmarks/paraview_fetch.py plugin/neuralvol_paraview.py model.nvc

Prints one line ``PARAVIEW decode_s=.. open_s=.. update_s=.. fetch_s=.. again_s=.. direct_s=..``:
``decode_s`` is ``nv.open(file).decode(dtype=float32, compute="auto")`` in this process (what
the reader, whose Compute property defaults to "auto", cannot beat), ``update_s`` the reader's first ``UpdatePipeline`` (the decode and the hand-over
to vtkImageData), ``fetch_s`` ``servermanager.Fetch`` of the result and ``again_s`` a second
re-execution of the reader with the same request plus its fetch (served by the decode cache),
``direct_s`` the same re-execution with the image taken from the reader's client-side object
instead of ``Fetch`` (a builtin session's output is in this process: no copy).
"""
import sys
import time

try:  # ParaView 5.11: PV_VENV + this import (plugin/shim/sitecustomize.py also does it)
    import paraview.web.venv  # noqa: F401
except ImportError:
    pass

import numpy as np
from paraview import servermanager as sm
from paraview.simple import LoadPlugin, OpenDataFile

import neuralvol as nv


def seconds(fn):
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def main(plugin: str, path: str) -> None:
    LoadPlugin(plugin, ns=globals())
    vol = nv.open(path)
    vol.decode(region=(0, 0, 0, 0, 0, 0))  # first-call imports and kernel load are not decode time
    decode_s, values = seconds(lambda: vol.decode(dtype=np.float32, compute="auto"))
    open_s, reader = seconds(lambda: OpenDataFile(path))
    update_s, _ = seconds(reader.UpdatePipeline)
    fetch_s, image = seconds(lambda: sm.Fetch(reader))
    assert tuple(image.GetDimensions()) == tuple(vol.dims), (image.GetDimensions(), vol.dims)
    # Re-execute with the same request (builtin session: the proxy's VTK object is here); the
    # reader's decode cache answers it, so this is the hand-over cost alone.
    reader.SMProxy.GetClientSideObject().Modified()
    again_s, _ = seconds(lambda: sm.Fetch(reader))
    # The same without Fetch: in a builtin session the reader's output is this process's own
    # vtkImageData, so a script can take it from the client-side object with no copy.
    reader.SMProxy.GetClientSideObject().Modified()
    direct_s, direct = seconds(lambda: (reader.UpdatePipeline(),
                                        reader.GetClientSideObject().GetOutputDataObject(0))[1])
    assert tuple(direct.GetDimensions()) == tuple(vol.dims), (direct.GetDimensions(), vol.dims)
    print(f"PARAVIEW decode_s={decode_s:.3f} open_s={open_s:.3f} update_s={update_s:.3f} "
          f"fetch_s={fetch_s:.3f} again_s={again_s:.3f} direct_s={direct_s:.3f} voxels={values.size}", flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:3])
