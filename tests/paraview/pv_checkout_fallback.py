"""The plugin loaded from a checkout by a ParaView Python that has no neuralvol and no
torch (no PV_VENV), run by tests/test_paraview.py under the real ``pvpython``.

    pvpython tests/paraview/pv_checkout_fallback.py PLUGIN NVC

The plugin must find the package beside plugin/ and load; reading a file must then fail
with the VTK layer's readable missing-dependency error, not a traceback.
"""
import sys

from paraview.simple import LoadPlugin, OpenDataFile

plugin, nvc = sys.argv[1:3]
try:
    import neuralvol
    print("NEURALVOL ALREADY IMPORTABLE", neuralvol.__file__, flush=True)
except ImportError:
    print("NO NEURALVOL BEFORE THE PLUGIN", flush=True)

LoadPlugin(plugin, ns=globals())
import neuralvol  # noqa: E402 - found through the plugin's sys.path fallback

print("LOADED", "NeuralVolumeReader" in globals(), neuralvol.__file__, neuralvol.__version__,
      flush=True)
print("TORCH IMPORTED", "torch" in sys.modules, flush=True)
reader = OpenDataFile(nvc)
print("READER", reader.GetXMLName(), flush=True)
reader.UpdatePipeline()
print("DONE", flush=True)
