"""neuralvol: a neural codec for volumetric data.

A 3D scalar field is compressed by fitting a multi-resolution hash encoding feeding a
tiny MLP that maps (x, y, z) to the value; the weights are the `.nvc` file. Decoding
evaluates the network, so any resolution, region or set of points can be decoded alone.

>>> import neuralvol as nv
>>> vol = nv.compress(array, spacing=(3.2, 3.2, 1.5), ratio=100, time_budget=60)  # doctest: +SKIP
>>> vol.save("head.nvc")                                                         # doctest: +SKIP
>>> nv.open("head.nvc").decode(region=(10, 40, 0, 63, 20, 50))                   # doctest: +SKIP

This package imports only numpy and torch; VTK is imported lazily, by the volume-file
readers and by :mod:`neuralvol.vtk_algorithms`.

``import neuralvol`` itself imports neither torch nor numpy: the codec's names are module
attributes resolved on first use (PEP 562), so the VTK layer can import the package and
report a missing torch as a readable error when a file is actually read.
"""
import importlib as _importlib
import sys as _sys
import types as _types

from .errors import FitCancelled, FormatError, InputError, NeuralVolError
from .version import LIBRARY_VERSION as __version__

__all__ = ["compress", "open", "open_all", "save_models", "read_header", "compress_series", "NeuralVolume", "FitProgress",
           "open_lazy", "decode_to_zarr", "decode_to_hdf5",
           "NeuralVolError", "InputError", "FormatError", "FitCancelled", "__version__"]

#: public name -> the submodule defining it, imported (with torch) on first access
_LAZY = {
    "compress": ".compress",
    "decode_to_hdf5": ".zarr_output",
    "decode_to_zarr": ".zarr_output",
    "open_lazy": ".lazy_arrays",
    "FitProgress": ".fitting",
    "NeuralVolume": ".volume",
    "open": ".volume",
    "open_all": ".volume",
    "read_header": ".volume",
    "save_models": ".volume",
    "compress_series": ".series",
}


def __getattr__(name):
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(_importlib.import_module(_LAZY[name], __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))


class _Package(_types.ModuleType):
    """Keeps ``neuralvol.compress`` the function: importing the submodule of the same
    name makes the import system set it as an attribute here, which would otherwise
    shadow the lazily resolved function."""

    def __setattr__(self, name, value):
        if name in _LAZY and isinstance(value, _types.ModuleType):
            return
        super().__setattr__(name, value)


_sys.modules[__name__].__class__ = _Package
