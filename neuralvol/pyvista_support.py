"""pyvista support: ``pv.read("head.nvc")``, and helpers between ``pv.ImageData`` and `.nvc`.

Installing neuralvol registers :class:`NVCReader` in pyvista's reader registry (the
``pyvista.readers`` entry point, pyvista >= 0.49 for reader classes), so::

    import pyvista as pv
    image = pv.read("head.nvc")                                  # pv.ImageData, original grid
    fine = pv.read("head.nvc", dims=(128, 128, 186))             # any resolution
    half = pv.read("head.nvc", scale=0.5)                        # or a factor of the original dims
    roi = pv.read("head.nvc", region=(10, 40, 0, 63, 20, 50))    # inclusive index extent
    reader = pv.get_reader("head.nvc"); reader.dims = (64, 64, 64); image = reader.read()

``pv.read`` keyword arguments set the reader's attributes (``dims``, ``scale``,
``region``, ``dtype``, ``model``) before reading, exactly as for pyvista's own readers.

Helpers (no registration needed)::

    from neuralvol.pyvista_support import compress_image, to_image
    vol = compress_image(image, scalars="density", ratio=100, time_budget=30)
    image = to_image(vol)                      # or to_image("head.nvc", dims=..., region=...)

This module is the only one in neuralvol that imports pyvista; ``import neuralvol``
never does.
"""
from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np

try:
    import pyvista as pv
    from pyvista.core.utilities.reader import BaseReader, BaseVTKReader, TimeReader
except ImportError as _exc:  # pragma: no cover - depends on the environment
    raise ImportError("neuralvol.pyvista_support needs pyvista >= 0.49 and vtk: "
                      "pip install 'neuralvol[pyvista]' (or pip install pyvista)") from _exc

from . import open as _open_nvc
from .compress import compress as _compress
from .errors import InputError
from .volume import NeuralVolume, validate_dims, validate_region

__all__ = ["NVCReader", "compress_image", "to_image", "register"]

EXTENSION = ".nvc"


# -- decoding to pv.ImageData ---------------------------------------------------------

def _resolve_dims(vol: NeuralVolume, dims=None, scale=None) -> tuple[int, int, int] | None:
    return None if dims is None and scale is None else vol.output_dims(dims, scale)


def _image_from_volume(vol: NeuralVolume, dims=None, region=None, scale=None, dtype=None,
                       progress=None) -> pv.ImageData:
    dims = _resolve_dims(vol, dims, scale)
    grid_dims = vol.dims if dims is None else dims
    if region is not None:
        region = validate_region(region, grid_dims)
    values = vol.decode(dims=dims, region=region, dtype=dtype, progress=progress)
    spacing = vol.grid_spacing(grid_dims)
    origin = list(vol.origin)
    if region is not None:  # the region's first voxel becomes the image's origin (offset stays 0)
        origin = [o + s * region[2 * a] for a, (o, s) in enumerate(zip(vol.origin, spacing))]
    nz, ny, nx = values.shape[:3]
    image = pv.ImageData(dimensions=(nx, ny, nz), spacing=spacing, origin=origin)
    # [z, y, x] C order = VTK order (x fastest); a [z, y, x, C] field is one C-component array
    flat = values.reshape(-1) if values.ndim == 3 else values.reshape(-1, values.shape[3])
    image.point_data[vol.array_name] = flat
    for c, cname in enumerate(vol.component_names or ()):
        if cname:
            image.point_data.GetArray(vol.array_name).SetComponentName(c, cname)
    image.point_data.active_scalars_name = vol.array_name
    return image


def to_image(vol_or_path: NeuralVolume | str | os.PathLike, dims: Sequence[int] | None = None,
             region: Sequence[int] | None = None, *, scale: float | None = None, dtype=None,
             model: int = 0) -> pv.ImageData:
    """Decode a :class:`~neuralvol.NeuralVolume` (or an `.nvc` path) to a ``pv.ImageData``.

    dims: resolution (x, y, z) over the original physical bounds (default: the original);
    or ``scale``, a factor of the original dims. region: inclusive index extent
    ``(x0, x1, y0, y1, z0, z1)`` of that grid. dtype: default the original's.
    The image's point-data array is named like the original, its spacing is the decoded
    grid's, and for a region its origin is the region's first voxel.

    >>> image = to_image("head.nvc", dims=(128, 128, 186))   # doctest: +SKIP
    """
    vol = vol_or_path if hasattr(vol_or_path, "decode") else _open_nvc(vol_or_path, model=model)   # or a BrickedVolume
    return _image_from_volume(vol, dims=dims, region=region, scale=scale, dtype=dtype)


# -- compressing a pv.ImageData -------------------------------------------------------

def image_array(image: Any, scalars: str | None = None) -> tuple[np.ndarray, str]:
    """The ``[z, y, x]`` (``[z, y, x, C]`` for C components) point-data array ``scalars``
    of an image (default: its active or only scalars)."""
    if not isinstance(image, pv.ImageData):
        try:
            image = pv.wrap(image)
        except Exception:  # noqa: BLE001 - anything unwrappable is bad input
            image = None
        if not isinstance(image, pv.ImageData):
            raise InputError(f"expected a pyvista.ImageData (or vtkImageData), got {type(image).__name__}")
    names = list(image.point_data.keys())
    if scalars is None:
        scalars = image.point_data.active_scalars_name
        if scalars is None:
            if len(names) != 1:
                hint = f"point arrays: {', '.join(map(repr, names))}" if names else "it has no point arrays"
                if not names and len(image.cell_data.keys()):
                    hint += " (cell data: use image.cell_data_to_point_data() first)"
                raise InputError(f"choose the array with scalars=NAME; {hint}")
            scalars = names[0]
    if scalars not in image.point_data:
        extra = " (it is cell data: use image.cell_data_to_point_data() first)" if scalars in image.cell_data else ""
        raise InputError(f"no point-data array {scalars!r}{extra}; point arrays: {', '.join(map(repr, names)) or 'none'}")
    values = np.asarray(image.point_data[scalars])
    nx, ny, nz = image.dimensions
    shape = (nz, ny, nx) if values.ndim == 1 else (nz, ny, nx, values.shape[1])
    return np.ascontiguousarray(values.reshape(shape)), str(scalars)


def compress_image(image: Any, scalars: str | None = None, **options) -> NeuralVolume:
    """Compress a point-data array of a ``pv.ImageData`` and return the :class:`~neuralvol.NeuralVolume`.

    scalars: the array's name (default: the active scalars, or the only point array).
    ``options`` go to :func:`neuralvol.compress` (``ratio``, ``bpv``, ``size``,
    ``time_budget``, ``steps``, ``psnr``, ``seed``, ``device``, ``progress``, ...);
    spacing, origin and the array name are taken from the image (``array_name=`` overrides
    the name). Images with a rotated ``direction_matrix`` are refused: `.nvc` stores an
    axis-aligned grid.

    >>> vol = compress_image(pv.read("head.vti"), scalars="density", ratio=100)  # doctest: +SKIP
    >>> vol.save("head.nvc")                                                      # doctest: +SKIP
    """
    for key in ("spacing", "origin"):
        if key in options:
            raise InputError(f"{key} comes from the image; set image.{key} instead")
    array, name = image_array(image, scalars)
    image = image if isinstance(image, pv.ImageData) else pv.wrap(image)
    direction = np.asarray(getattr(image, "direction_matrix", np.eye(3)))
    if not np.allclose(direction, np.eye(3)):
        raise InputError("the image has a rotated direction_matrix; .nvc stores axis-aligned grids only "
                         "(resample the image, or reset image.direction_matrix)")
    spacing = tuple(float(s) for s in image.spacing)
    offset = getattr(image, "offset", (0, 0, 0))  # extent start: voxel 0 of the array sits there
    origin = tuple(float(o) + float(k) * s for o, k, s in zip(image.origin, offset, spacing))
    options.setdefault("array_name", name)
    if array.ndim == 4:  # VTK's component names of a vector array travel with it
        vtk_array = image.point_data.GetArray(name)
        names = [vtk_array.GetComponentName(c) or "" for c in range(array.shape[3])]
        if any(names):
            options.setdefault("component_names", names)
    return _compress(array, spacing=spacing, origin=origin, **options)


# -- the pyvista reader ---------------------------------------------------------------

class _NVCDecoder(BaseVTKReader):
    """The VTK-reader-like half of :class:`NVCReader`: decodes on ``Update``."""

    def __init__(self) -> None:
        super().__init__()
        self._filename = None
        self._volumes: list[NeuralVolume] | None = None
        self.model = 0
        self.dims: tuple[int, int, int] | None = None
        self.scale: float | None = None
        self.region: tuple[int, ...] | None = None
        self.dtype = None
        self._progress = 0.0

    def SetFileName(self, filename) -> None:  # noqa: N802 - VTK's name
        self._filename = str(filename)
        self._volumes = None

    def UpdateInformation(self) -> None:  # noqa: N802 - opens and validates the file; no decoding
        if self._volumes is None:
            from .bricks.volume import read_models   # a bricked file is one volume
            self._volumes = read_models(self._filename)

    @property
    def volumes(self) -> list[NeuralVolume]:
        self.UpdateInformation()
        return self._volumes

    def GetProgress(self) -> float:  # noqa: N802
        return self._progress

    def _report(self, fraction: float) -> None:
        self._progress = float(fraction)
        from vtkmodules.vtkCommonCore import vtkCommand
        self.UpdateObservers(vtkCommand.ProgressEvent)

    def Update(self) -> None:  # noqa: N802
        volumes = self.volumes
        if not 0 <= self.model < len(volumes):
            raise InputError(f"model {self.model} is out of range: {self._filename!r} holds {len(volumes)} model(s)")
        self._progress = 0.0
        self._data_object = _image_from_volume(volumes[self.model], dims=self.dims, region=self.region,
                                               scale=self.scale, dtype=self.dtype, progress=self._report)
        self._progress = 1.0


class NVCReader(BaseReader, TimeReader):
    """pyvista reader for neuralvol `.nvc` files; ``read()`` returns a ``pv.ImageData``.

    Options (attributes, also accepted as ``pv.read(path, **options)`` keywords):

    - ``dims``: output resolution (x, y, z) over the original physical bounds, or ``None``
      for the original grid;
    - ``scale``: instead of ``dims``, a factor of the original dims (0.5, 2, ...);
    - ``region``: inclusive index extent ``(x0, x1, y0, y1, z0, z1)`` of the output grid;
      the image's origin moves to the region's first voxel;
    - ``dtype``: output dtype (default the original's, e.g. ``"float32"`` to skip rounding);
    - ``model``: which model of a multi-model file (time series: also
      ``set_active_time_point`` / ``set_active_time_value``).

    Information without decoding: ``volume`` (the :class:`~neuralvol.NeuralVolume`),
    ``original_dims``, ``bounds``, ``array_name``, ``number_time_points``, ``time_values``.

    >>> reader = pv.get_reader("head.nvc")                  # doctest: +SKIP
    >>> reader.dims = (128, 128, 186)                       # doctest: +SKIP
    >>> image = reader.read()                               # doctest: +SKIP
    """

    _class_reader = _NVCDecoder

    # -- options ----------------------------------------------------------------------
    @property
    def dims(self) -> tuple[int, int, int] | None:
        """Output resolution (x, y, z); ``None`` is the original grid."""
        return self.reader.dims

    @dims.setter
    def dims(self, value) -> None:
        self.reader.dims = None if value is None else validate_dims(value)

    @property
    def scale(self) -> float | None:
        """Output resolution as a factor of the original dims (instead of ``dims``)."""
        return self.reader.scale

    @scale.setter
    def scale(self, value) -> None:
        if value is not None and not float(value) > 0:
            raise InputError(f"scale must be positive, got {value}")
        self.reader.scale = None if value is None else float(value)

    @property
    def region(self) -> tuple[int, ...] | None:
        """Inclusive index extent ``(x0, x1, y0, y1, z0, z1)`` of the output grid; ``None`` for all."""
        return self.reader.region

    @region.setter
    def region(self, value) -> None:
        if value is not None:
            value = tuple(int(v) for v in value)
            if len(value) != 6:
                raise InputError(f"region must be six integers x0 x1 y0 y1 z0 z1, got {value!r}")
        self.reader.region = value

    @property
    def dtype(self):
        """Output dtype; ``None`` for the original's."""
        return self.reader.dtype

    @dtype.setter
    def dtype(self, value) -> None:
        self.reader.dtype = None if value is None else np.dtype(value)

    @property
    def model(self) -> int:
        """Index of the model (time step) to read."""
        return self.reader.model

    @model.setter
    def model(self, value) -> None:
        value = int(value)
        if not 0 <= value < self.number_time_points:
            raise InputError(f"model {value} is out of range: the file holds {self.number_time_points} model(s)")
        self.reader.model = value

    # -- information ------------------------------------------------------------------
    @property
    def volume(self) -> NeuralVolume:
        """The active model as a :class:`~neuralvol.NeuralVolume`."""
        return self.reader.volumes[self.reader.model]

    @property
    def original_dims(self) -> tuple[int, int, int]:
        return self.volume.dims

    @property
    def bounds(self) -> tuple[float, ...]:
        return self.volume.bounds

    @property
    def array_name(self) -> str:
        return self.volume.array_name

    # -- time (one model per time step) -----------------------------------------------
    @property
    def number_time_points(self) -> int:
        return len(self.reader.volumes)

    def time_point_value(self, time_point) -> float:
        t = self.reader.volumes[int(time_point)].time
        return float(time_point) if t is None else float(t)

    @property
    def active_time_value(self) -> float:
        return self.time_point_value(self.reader.model)

    def set_active_time_value(self, time_value) -> None:
        values = self.time_values
        if time_value not in values:
            raise ValueError(f"not a time value of this file: {time_value!r}; available: {values}")
        self.model = values.index(time_value)

    def set_active_time_point(self, time_point) -> None:
        self.model = time_point


def register() -> None:
    """Register :class:`NVCReader` for ``.nvc`` with pyvista by hand.

    Only needed where neuralvol is not installed as a distribution (the entry point
    does it otherwise); does nothing when pyvista already reads ``.nvc`` with it. Goes
    through pyvista's public registry only, and without ``override`` (that is for
    replacing a reader pyvista ships; it has none for ``.nvc``).
    """
    if any(r.extension == EXTENSION and r.handler is NVCReader for r in pv.registered_readers()):
        return
    pv.register_reader(EXTENSION, NVCReader)
