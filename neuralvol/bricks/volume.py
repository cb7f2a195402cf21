"""A volume stored as bricks: one model per brick, blended across the overlaps on decode.

:class:`BrickedVolume` has the API of :class:`neuralvol.NeuralVolume` (``decode``,
``sample``, ``info``, ``nbytes``, ``ratio``, ...). A region or resolution request
evaluates only the bricks whose blend weights touch it; ``decoded_bricks`` records
which, so callers (the VTK reader, MPI pieces) can check they decode only their own.
"""
from __future__ import annotations

import contextlib
import math
import os
from typing import Callable, Sequence

import numpy as np

from ..bitstream import atomic_io, schema
from ..bitstream.records import TrainingSummary
from ..errors import FormatError, InputError
from ..volume import (NeuralVolume, VolumeInfo, _check_decode_fits, cast_to_dtype, validate_dims,
                      validate_region)
from .layout import BrickLayout

HEADER_KEY = "bricks"


class BrickedVolume:
    """Bricks of one volume (``bricks[i]`` is a NeuralVolume over ``layout.extent(i)``)."""

    def __init__(self, bricks: Sequence[NeuralVolume], layout: BrickLayout, info: VolumeInfo,
                 training: TrainingSummary | None = None):
        if len(bricks) != len(layout):
            raise InputError(f"{len(bricks)} models for a layout of {len(layout)} bricks")
        self.bricks = list(bricks)
        self.layout = layout
        self.info = info
        self.training = training if training is not None else TrainingSummary()
        self.storage = None
        self.search = None
        #: indices of the bricks evaluated since the last :meth:`reset_decoded_bricks`
        self.decoded_bricks: set[int] = set()
        #: filled by compress_bricked: peak memory, per-brick bytes and PSNR, seam numbers
        self.report: dict = {}
        self._nbytes: int | None = None

    dims = property(lambda self: self.info.dims)
    spacing = property(lambda self: self.info.spacing)
    origin = property(lambda self: self.info.origin)
    array_name = property(lambda self: self.info.array_name)
    time = property(lambda self: self.info.time)
    value_range = property(lambda self: self.info.value_range)
    # bricked files hold scalar fields without error-bound corrections (compress_bricked refuses both)
    n_components = property(lambda self: self.info.n_components)
    component_names = NeuralVolume.component_names
    correction = None
    max_error = None
    bounds = NeuralVolume.bounds
    output_dims = NeuralVolume.output_dims
    grid_spacing = NeuralVolume.grid_spacing

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.info.dtype)

    @property
    def config(self):
        """The first brick's network (bricks may differ: see ``bricks[i].config``)."""
        return self.bricks[0].config

    @property
    def nbytes(self) -> int:
        if self._nbytes is None:
            self._nbytes = len(to_bytes(self))
        return self._nbytes

    @property
    def ratio(self) -> float:
        return self.info.native_bytes / self.nbytes

    def __repr__(self) -> str:
        return (f"<BrickedVolume {self.array_name!r} dims={self.dims} {len(self.bricks)} bricks "
                f"{'x'.join(map(str, self.layout.shape))} dtype={self.dtype} {self.nbytes} bytes "
                f"ratio={self.ratio:.1f}>")

    def reset_decoded_bricks(self) -> None:
        self.decoded_bricks = set()

    # -- decoding -----------------------------------------------------------------------
    def _columns(self, axis: int, u: np.ndarray) -> list[tuple[int, int, int]]:
        """(column, first, last) output indices along ``axis`` where column's weight is positive."""
        out = []
        for j in range(self.layout.shape[axis]):
            lo, hi = self.layout.axis_support(axis, j)
            inside = np.nonzero((u > lo) & (u < hi))[0]
            if inside.size:
                out.append((j, int(inside[0]), int(inside[-1])))
        return out

    def decode(self, dims: Sequence[int] | None = None, region: Sequence[int] | None = None,
               dtype=None, device: str = "cpu", progress: Callable[[float], None] | None = None,
               compute: str = "float32") -> np.ndarray:
        """Decode on a grid over the whole bounds, like :meth:`NeuralVolume.decode`; only the
        bricks whose blend weights touch ``region`` are evaluated (``compute`` per brick)."""
        dims = self.dims if dims is None else validate_dims(dims)
        region = (0, dims[0] - 1, 0, dims[1] - 1, 0, dims[2] - 1) if region is None else validate_region(region, dims)
        out_dtype = self.dtype if dtype is None else np.dtype(dtype)
        shape = tuple(region[2 * a + 1] - region[2 * a] + 1 for a in (2, 1, 0))
        _check_decode_fits(shape, out_dtype)
        # continuous original-index coordinate of each output node, per axis x, y, z
        u = []
        for a in range(3):
            n, m = self.dims[a], dims[a]
            idx = np.arange(region[2 * a], region[2 * a + 1] + 1, dtype=np.float64)
            u.append(idx * ((n - 1) / (m - 1)) if m > 1 and n > 1 else np.zeros_like(idx))
        columns = [self._columns(a, u[a]) for a in range(3)]
        jobs = [(cx, cy, cz) for cz in columns[2] for cy in columns[1] for cx in columns[0]]
        acc = np.zeros(shape, dtype=np.float64)
        for done, (cx, cy, cz) in enumerate(jobs):
            i = self.layout.index(cx[0], cy[0], cz[0])
            brick = self.bricks[i]
            ext = self.layout.extent(i)
            sl, axes, weights = [], [], []
            for a, (j, first, last) in enumerate((cx, cy, cz)):
                uu = u[a][first:last + 1]
                span = ext[2 * a + 1] - ext[2 * a]
                axes.append(np.clip((uu - ext[2 * a]) / span, 0.0, 1.0) if span > 0 else np.zeros_like(uu))
                weights.append(self.layout.axis_weight(a, j, uu))
                sl.append(slice(first, last + 1))
            offset, scale = brick._normalisation()
            if scale == 0.0:
                values = np.full((len(axes[2]), len(axes[1]), len(axes[0])), offset)
            else:
                brick.network.to(device)
                mlp_dtype = brick.mlp_dtype(compute, device)
                values = offset + scale * brick.field_grid(axes, device, None, mlp_dtype).astype(np.float64)
            w = weights[2][:, None, None] * weights[1][None, :, None] * weights[0][None, None, :]
            acc[sl[2], sl[1], sl[0]] += w * values
            self.decoded_bricks.add(i)
            if progress is not None:
                progress((done + 1) / len(jobs))
        return cast_to_dtype(acc, out_dtype)

    def sample(self, points, device: str = "cpu") -> np.ndarray:
        """Evaluate the blended field at physical points (NaN outside the bounds)."""
        pts = np.asarray(points, dtype=np.float64)
        if pts.ndim != 2 or pts.shape[1] != 3:
            raise InputError(f"points must have shape (N, 3), got {pts.shape}")
        values = np.full(pts.shape[0], np.nan)
        u = np.empty_like(pts)
        inside = np.all(np.isfinite(pts), axis=1)
        for a in range(3):
            rel = (pts[:, a] - self.origin[a]) / self.spacing[a]
            tol = 1e-6
            inside &= (rel >= -tol) & (rel <= self.dims[a] - 1 + tol)
            u[:, a] = np.clip(np.nan_to_num(rel), 0, self.dims[a] - 1)
        if not inside.any():
            return values
        u_in = u[inside]
        acc = np.zeros(u_in.shape[0])
        for i, brick in enumerate(self.bricks):
            ext = self.layout.extent(i)
            pos = self.layout.grid_position(i)
            w = np.ones(u_in.shape[0])
            for a in range(3):
                w *= self.layout.axis_weight(a, pos[a], u_in[:, a])
            hit = w > 0
            if not hit.any():
                continue
            unit = np.empty((int(hit.sum()), 3))
            for a in range(3):
                span = ext[2 * a + 1] - ext[2 * a]
                unit[:, a] = np.clip((u_in[hit, a] - ext[2 * a]) / span, 0, 1) if span > 0 else 0.0
            offset, scale = brick._normalisation()
            v = np.full(unit.shape[0], offset)
            if scale != 0.0:
                brick.network.to(device)
                v = offset + scale * brick.field_points(unit, device).astype(np.float64)
            acc[hit] += w[hit] * v
            self.decoded_bricks.add(i)
        values[inside] = acc
        return values

    @contextlib.contextmanager
    def sampling(self):
        """:meth:`NeuralVolume.sampling` for every brick: :meth:`sample` calls inside are one request."""
        with contextlib.ExitStack() as stack:
            for brick in self.bricks:
                stack.enter_context(brick.sampling())
            yield self

    _normalisation = NeuralVolume._normalisation

    def save(self, path: str | os.PathLike) -> None:
        """Write the bricked file atomically (temp file + rename)."""
        atomic_io.write_atomic(path, to_bytes(self))


def header_entry(vol: BrickedVolume) -> dict:
    info = vol.info
    entry = {"layout": vol.layout.to_dict(), "array_name": info.array_name,
             "spacing": [float(s) for s in info.spacing], "origin": [float(o) for o in info.origin],
             "dtype": info.dtype, "value_range": [float(v) for v in info.value_range]}
    if info.time is not None:
        entry["time"] = float(info.time)
    t = vol.training.to_dict()
    entry["training"] = {k: v for k, v in t.items() if v not in (None, [], {})}
    return entry


def to_bytes(vol: BrickedVolume) -> bytes:
    return schema.to_bytes(vol.bricks, compact=False, extra={HEADER_KEY: header_entry(vol)})


def from_header(entry, volumes: list[NeuralVolume], size: int, source: str) -> BrickedVolume:
    if not isinstance(entry, dict):
        raise FormatError(f"{source}: malformed 'bricks' entry in the header")
    layout = BrickLayout.from_dict(entry.get("layout"), source)
    if len(volumes) != len(layout):
        raise FormatError(f"{source}: the brick layout has {len(layout)} bricks but the file holds "
                          f"{len(volumes)} models")
    for i, v in enumerate(volumes):
        if v.info.extent != layout.extent(i):
            raise FormatError(f"{source}: model {i} covers {v.info.extent}, the brick layout says "
                              f"{layout.extent(i)}")
    try:
        info = VolumeInfo(dims=layout.dims, spacing=tuple(float(s) for s in entry["spacing"]),
                          origin=tuple(float(o) for o in entry["origin"]), array_name=str(entry["array_name"]),
                          dtype=str(entry["dtype"]), value_range=tuple(float(v) for v in entry["value_range"]),
                          time=float(entry["time"]) if entry.get("time") is not None else None)
        if len(info.spacing) != 3 or len(info.origin) != 3 or len(info.value_range) != 2 \
                or not all(math.isfinite(v) for v in info.spacing + info.origin + info.value_range) \
                or info.dtype not in schema.VALUE_DTYPES:
            raise ValueError
    except (KeyError, TypeError, ValueError):
        raise FormatError(f"{source}: the 'bricks' entry has an invalid placement or dtype") from None
    training = TrainingSummary.from_dict(entry.get("training") if isinstance(entry.get("training"), dict) else {})
    vol = BrickedVolume(volumes, layout, info, training)
    vol._nbytes = size
    return vol


def read_models(path: str | os.PathLike) -> list:
    """The logical volumes of a file: ``[BrickedVolume]`` for a bricked file, else every model."""
    data = atomic_io.read_bytes(path)
    source = os.fspath(path)
    header, volumes = schema.header_and_volumes(data, source)
    if HEADER_KEY in header:
        # filtered bricks in a file below version 7 (a version-6 reader would blend the bare
        # networks) are refused by container.decode, as is any file below its contents' version
        return [from_header(header[HEADER_KEY], volumes, len(data), source)]
    return volumes
