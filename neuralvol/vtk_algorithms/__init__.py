"""VTK algorithms for neuralvol (layer 2): pure ``vtkmodules`` ``VTKPythonAlgorithmBase``
subclasses that run with the pip ``vtk`` wheel and inside ParaView's own VTK.

- ``NeuralVolumeReader``: ``.nvc`` -> ``vtkImageData``, decoding only the requested extent
- ``NeuralVolumeWriter``: a ``vtkImageData`` point array -> ``.nvc``
- ``NeuralVolumeProbe``: the neural field sampled at any dataset's points

``import neuralvol`` never imports this subpackage (nor VTK); import it explicitly.
Importing it imports no torch: the codec is imported (``_common.import_core``) when a
file is first read or written, and a missing torch is then a VTK error message.
"""
from .probe import NeuralVolumeProbe
from .reader import NeuralVolumeReader, output_dims
from .writer import NeuralVolumeWriter, image_to_array

__all__ = ["NeuralVolumeReader", "NeuralVolumeWriter", "NeuralVolumeProbe",
           "output_dims", "image_to_array"]
