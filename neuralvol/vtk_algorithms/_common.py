"""Helpers shared by the VTK algorithms: errors, numpy <-> VTK arrays, extents.

Imports only ``vtkmodules`` and numpy; the codec core is imported lazily by
``import_core`` so that a missing dependency (torch in ParaView's Python) becomes a
readable VTK error on first use instead of a crash when the module is imported.
"""
from __future__ import annotations

import numpy as np
from vtkmodules.util import numpy_support
from vtkmodules.vtkCommonCore import vtkOutputWindow

#: errors we turn into one-line VTK error messages (anything else is a bug: traceback)
EXPECTED_ERRORS = (OSError, ValueError, ImportError)


def import_core():
    """Return the ``neuralvol`` package with its codec (and torch) imported, or raise
    ImportError with a fix-it hint. ``import neuralvol`` alone succeeds without torch
    (its codec names are lazy), so the codec modules are imported here explicitly."""
    try:
        import neuralvol
        import neuralvol.compress  # noqa: F401 - the writer's fit, and torch
        import neuralvol.volume  # noqa: F401 - open_all, decode
    except ImportError as exc:  # torch or numpy missing from this interpreter
        raise ImportError(
            f"neuralvol cannot be imported in this Python ({exc}); inside ParaView set "
            "PV_VENV to a venv holding torch==2.13.0, numpy<2 and neuralvol "
            "(see docs/PARAVIEW.md)") from exc
    return neuralvol


def expected_errors():
    """The exception types reported as a VTK error message rather than a traceback."""
    from ..errors import NeuralVolError  # torch-free
    return EXPECTED_ERRORS + (NeuralVolError,)


def modified_callback(algorithm):
    """An observer callback that calls ``algorithm.Modified()`` through a weak reference.

    For a ``vtkDataArraySelection`` the algorithm owns: a callback holding ``algorithm``
    itself would tie the two into a cycle through VTK's C++ observer list (with VTK 9.7
    such a reader survived ``del`` until ``gc.collect()``); ParaView's
    PythonAlgorithmExamples use the same weakref factory."""
    import weakref
    ref = weakref.ref(algorithm)

    def mark_modified(*_event):
        target = ref()
        if target is not None:
            target.Modified()

    return mark_modified


def report_error(algorithm, message: str) -> None:
    """Emit ``message`` the way vtkErrorMacro does (to the VTK output window, which is
    ParaView's Output Messages inside ParaView) and keep it on ``algorithm.last_error``."""
    algorithm.last_error = message
    text = f"ERROR: In {type(algorithm).__module__}\n{type(algorithm).__name__} " \
           f"({algorithm.GetClassName()}): {message}\n\n"
    vtkOutputWindow.GetInstance().DisplayErrorText(text)


def check_abort(algorithm) -> bool:
    """True when the user asked to stop: ``CheckAbort`` on VTK >= 9.3, the abort flag
    on older VTKs (ParaView 5.11 embeds VTK 9.2)."""
    if hasattr(algorithm, "CheckAbort"):
        return bool(algorithm.CheckAbort())
    return bool(algorithm.GetAbortExecute())


def set_progress_text(algorithm, text: str) -> None:
    if hasattr(algorithm, "SetProgressText"):
        algorithm.SetProgressText(text)


def numpy_to_vtk(values: np.ndarray, name: str, components: int = 1, component_names=None):
    """A VTK data array holding a copy of ``values`` (flattened, C order): one tuple per
    point, of ``components`` values (the trailing axis of a ``[z, y, x, C]`` array)."""
    flat = np.ascontiguousarray(values).reshape((-1,) if components == 1 else (-1, components))
    if flat.dtype == np.bool_:
        flat = flat.astype(np.uint8)
    arr = numpy_support.numpy_to_vtk(flat, deep=1)
    arr.SetName(name)
    for c, cname in enumerate(component_names or ()):
        if cname:
            arr.SetComponentName(c, cname)
    return arr


def vtk_to_numpy(array) -> np.ndarray:
    return numpy_support.vtk_to_numpy(array)


def extent_dims(extent) -> tuple[int, int, int]:
    """Number of points per axis (x, y, z) of an inclusive VTK extent."""
    return tuple(int(extent[2 * i + 1]) - int(extent[2 * i]) + 1 for i in range(3))


def extent_size(extent) -> int:
    nx, ny, nz = extent_dims(extent)
    return max(nx, 0) * max(ny, 0) * max(nz, 0)


def extent_is_empty(extent) -> bool:
    return any(extent[2 * i + 1] < extent[2 * i] for i in range(3))


def clip_extent(extent, bounds_extent) -> tuple[int, ...]:
    """``extent`` clipped to ``bounds_extent`` (may come out empty)."""
    out = []
    for i in range(3):
        out.append(max(int(extent[2 * i]), int(bounds_extent[2 * i])))
        out.append(min(int(extent[2 * i + 1]), int(bounds_extent[2 * i + 1])))
    return tuple(out)


def dataset_points(dataset) -> np.ndarray:
    """Physical coordinates (N, 3) float64 of every point of any vtkDataSet, computed
    vectorised for images and rectilinear grids."""
    n = dataset.GetNumberOfPoints()
    if n == 0:
        return np.zeros((0, 3))
    if dataset.IsA("vtkImageData"):
        ext = dataset.GetExtent()
        origin = np.array(dataset.GetOrigin(), dtype=np.float64)
        spacing = np.array(dataset.GetSpacing(), dtype=np.float64)
        axes = [np.arange(ext[2 * i], ext[2 * i + 1] + 1, dtype=np.float64) for i in range(3)]
        k, j, i = np.meshgrid(axes[2], axes[1], axes[0], indexing="ij")
        ijk = np.stack([i.ravel(), j.ravel(), k.ravel()], axis=1)
        direction = np.eye(3)
        if hasattr(dataset, "GetDirectionMatrix"):
            m = dataset.GetDirectionMatrix()
            direction = np.array([[m.GetElement(r, c) for c in range(3)] for r in range(3)])
        return origin + (ijk * spacing) @ direction.T
    if dataset.IsA("vtkRectilinearGrid"):
        xs, ys, zs = (vtk_to_numpy(a).astype(np.float64) for a in (
            dataset.GetXCoordinates(), dataset.GetYCoordinates(), dataset.GetZCoordinates()))
        z, y, x = np.meshgrid(zs, ys, xs, indexing="ij")
        return np.stack([x.ravel(), y.ravel(), z.ravel()], axis=1)
    if hasattr(dataset, "GetPoints") and dataset.GetPoints() is not None:
        return vtk_to_numpy(dataset.GetPoints().GetData()).astype(np.float64).reshape(-1, 3)
    return np.array([dataset.GetPoint(i) for i in range(n)], dtype=np.float64)


class NvcFileMixin:
    """The ``FileName`` property and a cached open of the file's models, shared by the
    algorithms that read `.nvc` files. The cache follows the file's mtime and size, so
    rewriting the file re-reads it on the next execution."""

    _filename = None
    _models = None
    _models_key = None

    def SetFileName(self, name):
        name = None if name in (None, "") else str(name)
        if name != self._filename:
            self._filename = name
            self._models = None
            self.Modified()

    def GetFileName(self):
        return self._filename

    def _open_models(self):
        """(models, fresh): the file's models, and whether they were just (re)read."""
        import os
        if not self._filename:
            raise ValueError("no .nvc file name set")
        try:
            st = os.stat(self._filename)
        except OSError as exc:
            raise OSError(f"cannot open {self._filename}: {exc.strerror}") from None
        key = (self._filename, st.st_mtime_ns, st.st_size)
        if self._models is not None and self._models_key == key:
            return self._models, False
        nv = import_core()
        from neuralvol.bricks.volume import read_models  # a bricked file is one volume
        models = list(read_models(self._filename))
        if not models:
            raise nv.FormatError(f"{self._filename}: the file holds no model")
        self._models, self._models_key = models, key
        return models, True
