"""Where the bricks are: cores that tile the grid, extents grown by an overlap, blend weights.

Each axis of ``n`` voxels is cut into ``k = ceil(n / brick)`` near-equal *cores* (their
boundaries are ``round(linspace(0, n, k + 1))``). A brick's model is fitted on its core
grown by ``overlap`` voxels on each side (clipped to the grid): its *extent*. Decoding
blends neighbours across each core boundary ``c`` with linear partition-of-unity weights
over ``[c - overlap - 1/2, c + overlap - 1/2]`` in continuous index space, so the blended
field is continuous at any resolution and every weight is positive only where its brick's
model was fitted. With ``overlap = 0`` each point takes its core's brick alone.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import FormatError, InputError

BLENDS = ("linear",)


def axis_splits(n: int, brick: int) -> list[int]:
    """Core boundaries ``0 = c0 < c1 < ... < ck = n`` of an ``n``-voxel axis, cores near ``brick``."""
    k = max(1, math.ceil(n / brick))
    return [int(v) for v in np.round(np.linspace(0, n, k + 1))]


@dataclass(frozen=True)
class BrickLayout:
    """The brick grid of a volume of ``dims`` (x, y, z) voxels."""

    dims: tuple[int, int, int]                       # x, y, z
    splits: tuple[tuple[int, ...], ...]              # per axis x, y, z: core boundaries
    overlap: int = 0
    blend: str = "linear"

    @classmethod
    def for_volume(cls, dims, brick, overlap: int) -> "BrickLayout":
        """Bricks of about ``brick`` voxels per axis (an int, or three for x, y, z)."""
        sizes = (brick,) * 3 if np.ndim(brick) == 0 else tuple(brick)
        if len(sizes) != 3 or not all(int(s) == s and s >= 2 for s in sizes):
            raise InputError(f"brick size must be an integer >= 2 (or three of them, x y z), got {brick!r}")
        if not (int(overlap) == overlap and overlap >= 0):
            raise InputError(f"brick overlap must be an integer >= 0, got {overlap!r}")
        splits = tuple(tuple(axis_splits(int(n), int(s))) for n, s in zip(dims, sizes))
        if overlap > 0 and any(min(np.diff(s)) <= overlap for s in splits if len(s) > 2):
            raise InputError(f"brick overlap {overlap} must be smaller than the bricks ({brick}); "
                             f"use a larger --brick or a smaller overlap")
        return cls(tuple(int(n) for n in dims), splits, int(overlap))

    @property
    def shape(self) -> tuple[int, int, int]:
        """Bricks per axis, x, y, z."""
        return tuple(len(s) - 1 for s in self.splits)

    def __len__(self) -> int:
        return math.prod(self.shape)

    def index(self, ix: int, iy: int, iz: int) -> int:
        """Model index of a brick (x fastest, as the file stores them)."""
        kx, ky, _ = self.shape
        return (iz * ky + iy) * kx + ix

    def grid_position(self, i: int) -> tuple[int, int, int]:
        kx, ky, _ = self.shape
        return i % kx, (i // kx) % ky, i // (kx * ky)

    def core(self, i: int) -> tuple[int, ...]:
        """Inclusive index extent x0, x1, y0, y1, z0, z1 of brick ``i``'s core."""
        out = []
        for a, j in enumerate(self.grid_position(i)):
            out += [self.splits[a][j], self.splits[a][j + 1] - 1]
        return tuple(out)

    def extent(self, i: int) -> tuple[int, ...]:
        """Inclusive index extent of brick ``i``'s model: its core grown by the overlap."""
        c = self.core(i)
        out = []
        for a in range(3):
            out += [max(0, c[2 * a] - self.overlap), min(self.dims[a] - 1, c[2 * a + 1] + self.overlap)]
        return tuple(out)

    def slices(self, i: int) -> tuple[slice, slice, slice]:
        """``[z, y, x]`` slices of brick ``i``'s extent in the full array."""
        e = self.extent(i)
        return tuple(slice(e[2 * a], e[2 * a + 1] + 1) for a in (2, 1, 0))

    def core_voxels(self, i: int) -> int:
        c = self.core(i)
        return math.prod(c[2 * a + 1] - c[2 * a] + 1 for a in range(3))

    # -- blending -----------------------------------------------------------------------
    def axis_weight(self, axis: int, j: int, u: np.ndarray) -> np.ndarray:
        """Weight of brick column ``j`` along ``axis`` at continuous indices ``u`` (sums to 1 over j)."""
        s = self.splits[axis]
        w = np.ones_like(u, dtype=np.float64)
        h = self.overlap
        for c, rising in ((s[j], True), (s[j + 1], False)):
            if c in (0, self.dims[axis]):
                continue  # the grid's own faces: nothing to blend with
            t = c - 0.5
            if h == 0:
                step = (u >= t) if rising else (u < t)
                w = w * step
            else:
                ramp = np.clip((u - (t - h)) / (2 * h), 0.0, 1.0)
                w = w * (ramp if rising else 1.0 - ramp)
        return w

    def axis_support(self, axis: int, j: int) -> tuple[float, float]:
        """Continuous index interval where column ``j``'s weight may be positive."""
        s, h = self.splits[axis], self.overlap
        lo = -math.inf if s[j] == 0 else s[j] - 0.5 - h
        hi = math.inf if s[j + 1] == self.dims[axis] else s[j + 1] - 0.5 + h
        return lo, hi

    # -- header ---------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {"dims": list(self.dims), "splits": [list(s) for s in self.splits], "overlap": self.overlap,
                "blend": self.blend}

    @classmethod
    def from_dict(cls, d, source: str = "file") -> "BrickLayout":
        try:
            dims = tuple(int(v) for v in d["dims"])
            splits = tuple(tuple(int(v) for v in s) for s in d["splits"])
            overlap, blend = int(d["overlap"]), str(d.get("blend", "linear"))
        except (KeyError, TypeError, ValueError):
            raise FormatError(f"{source}: malformed 'bricks' entry in the header") from None
        ok = (len(dims) == 3 and len(splits) == 3 and all(n >= 1 for n in dims) and overlap >= 0
              and all(len(s) >= 2 and s[0] == 0 and s[-1] == n and all(b > a for a, b in zip(s, s[1:]))
                      for s, n in zip(splits, dims)))
        if not ok:
            raise FormatError(f"{source}: the 'bricks' entry does not describe a tiling of the grid")
        if blend not in BLENDS:
            raise FormatError(f"{source}: unknown brick blending {blend!r} (this neuralvol knows {', '.join(BLENDS)})")
        if math.prod(len(s) - 1 for s in splits) > 2 ** 16:
            raise FormatError(f"{source}: the 'bricks' entry lists more bricks than the limit of 65536")
        return cls(dims, splits, overlap, blend)
