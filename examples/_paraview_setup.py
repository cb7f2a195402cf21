"""What every ParaView example needs first: torch from ``PV_VENV`` and the neuralvol plugin.

Run the examples with ``PV_VENV=.venv-paraview PYTHONPATH=plugin/shim`` (docs/PARAVIEW.md).
"""
import os

try:  # ParaView 5.11: activates PV_VENV (5.13+: pvpython --venv DIR)
    import paraview.web.venv  # noqa: F401
except ImportError:
    pass
from paraview.simple import LoadPlugin

PLUGIN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "plugin", "neuralvol_paraview.py")


def load_neuralvol_plugin(namespace: dict) -> None:
    """Load the plugin and put its proxies (NeuralVolumeReader, ...) into ``namespace``."""
    LoadPlugin(PLUGIN, ns=namespace)
