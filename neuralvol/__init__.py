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
"""
from .compress import compress
from .errors import FitCancelled, FormatError, InputError, NeuralVolError
from .fitting import FitProgress
from .volume import LIBRARY_VERSION as __version__
from .volume import NeuralVolume, open, open_all, read_header, save_models

__all__ = ["compress", "open", "open_all", "save_models", "read_header", "NeuralVolume", "FitProgress",
           "NeuralVolError", "InputError", "FormatError", "FitCancelled", "__version__"]
