"""A point-wise error bound: a correction layer for the voxels the network misses by more than E.

After the fit, the whole original grid is decoded the way :meth:`NeuralVolume.decode` does
(float64 values ``v`` before the cast to the stored dtype). Every voxel with
``|v - x| > e`` (``e`` the working bound below) gets a correction ``k * step`` with
``k = round((x - v) / step)`` and ``step = 2 e``, so ``|v + k step - x| <= e``. A decode on
the original grid adds the corrections (inside its region) before the cast; a decode at
other ``dims`` or :meth:`NeuralVolume.sample` cannot, and is not bounded.

The working bound ``e`` leaves room for what happens after the correction:

* ``PATH_MARGIN`` (of the value range): another decode path (per-voxel vs separable, a
  region, another device or machine) may see a slightly different network output. The
  encoder checks with the default path, which is bit-exact run to run on one machine.
* the cast: a float dtype rounds to half an ulp of the largest magnitude (a full ulp is
  taken); an integer dtype rounds to the nearest integer, so ``e = floor(E) + 0.5 -
  margin``: ``E = 0`` on integer data is lossless.

Positions (sorted linear indices of the ``[z, y, x]`` grid) are stored as gaps and the
integers ``k`` zigzag-mapped, both as base-128 varint bytes coded by
:mod:`neuralvol.bitstream.entropy`. Format: docs/FORMAT.md, "Error-bound corrections".
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .errors import FormatError, InputError

# Decode paths differ by ~1e-7 of the range (float32 ulps of a normalised output; the
# separable and per-voxel grid paths and region decodes measured in tests/test_error_bound.py);
# 2e-6 is 16 float32 ulps at 1.0, and costs under 2 % of E at E = 1e-4 of the range.
PATH_MARGIN = 2e-6
KEY = "error_bound"
POSITIONS = "correction_positions"
VALUES = "correction_values"
MAX_VARINT_BYTES = 9  # 63 bits: every int64 gap or zigzagged correction


def validate_max_error(max_error) -> float:
    """``max_error`` as a float >= 0, or a one-line InputError."""
    try:
        e = float(max_error)
    except (TypeError, ValueError):
        raise InputError(f"max error must be a number >= 0, got {max_error!r}") from None
    if not (math.isfinite(e) and e >= 0):
        raise InputError(f"max error must be a finite number >= 0, got {max_error!r}")
    return e


def working_bound(max_error: float, dtype: np.dtype, value_range: tuple[float, float]) -> float:
    """The bound the corrections aim for (see the module docstring); InputError if none is left."""
    lo, hi = (float(v) for v in value_range)
    margin = PATH_MARGIN * (hi - lo)
    dtype = np.dtype(dtype)
    if dtype.kind in "iu":
        e = math.floor(max_error) + 0.5 - margin
        floor_txt = "0 (lossless)"
    else:
        # a full ulp of the largest value (the cast itself rounds by half of one) and float64
        # arithmetic on v + k step
        cast = float(np.finfo(dtype).eps) * (max(abs(lo), abs(hi)) + max_error) + 8 * np.finfo(np.float64).eps * (
            max(abs(lo), abs(hi)) + (hi - lo))
        e = max_error - margin - cast
        floor_txt = f"{margin + cast:.3g}"
    if not e > 0:
        raise InputError(f"max error {max_error:g} is below what {dtype.name} values with range [{lo:g}, {hi:g}] "
                         f"can be guaranteed to; use a max error above {floor_txt}")
    return e


@dataclass
class CorrectionLayer:
    """Corrections ``values * step`` at sorted linear ``positions`` of the original grid."""

    max_error: float
    step: float
    positions: np.ndarray  # int64, strictly increasing, < the grid's voxel count
    values: np.ndarray     # int64, non-zero

    @property
    def count(self) -> int:
        return int(self.positions.size)

    def apply(self, values: np.ndarray, dims, region) -> None:
        """Add the corrections inside ``region`` (inclusive x0 x1 y0 y1 z0 z1 of the original
        ``dims`` grid) to ``values`` (float64 ``[z, y, x]`` of that region), in place."""
        if not self.count:
            return
        nx, ny, _ = dims
        x0, x1, y0, y1, z0, z1 = region
        plane = nx * ny
        # positions are sorted: the region's z-slab is one contiguous run
        a, b = np.searchsorted(self.positions, [z0 * plane, (z1 + 1) * plane])
        pos, k = self.positions[a:b], self.values[a:b]
        z, rest = np.divmod(pos, plane)
        y, x = np.divmod(rest, nx)
        inside = (x >= x0) & (x <= x1) & (y >= y0) & (y <= y1)
        values[z[inside] - z0, y[inside] - y0, x[inside] - x0] += k[inside] * self.step

    def entry(self) -> dict:
        return {"max_error": self.max_error, "step": self.step, "count": self.count}

    def symbol_arrays(self) -> dict[str, np.ndarray]:
        """The int8 symbol arrays of the two sections (none when nothing is corrected)."""
        if not self.count:
            return {}
        gaps = np.diff(self.positions, prepend=-1) - 1
        zigzag = (self.values << 1) ^ (self.values >> 63)
        return {POSITIONS: varint_bytes(gaps).view(np.int8), VALUES: varint_bytes(zigzag).view(np.int8)}


def build(values: np.ndarray, original: np.ndarray, max_error: float, value_range) -> CorrectionLayer:
    """The corrections that bring ``values`` (float64 decode before the cast) within
    ``max_error`` of ``original`` after the cast to ``original.dtype``."""
    e = working_bound(max_error, original.dtype, value_range)
    step = 2.0 * e
    residual = original.astype(np.float64).reshape(-1) - values.reshape(-1)
    flagged = np.flatnonzero(np.abs(residual) > e)
    k = np.rint(residual[flagged] / step).astype(np.int64)
    return CorrectionLayer(float(max_error), float(step), flagged.astype(np.int64), k)


def from_entry(entry: dict, arrays: dict, index: int, n_voxels: int, source: str) -> CorrectionLayer | None:
    """The correction layer of model ``index`` (None when its entry has no ``error_bound``)."""
    meta = entry.get(KEY)
    if meta is None:
        return None
    where = f"{source}: model {index}'s error-bound corrections"
    try:
        max_error, step, count = float(meta["max_error"]), float(meta["step"]), meta["count"]
    except (KeyError, TypeError, ValueError):
        raise FormatError(f"{where} are malformed in the header: {str(meta)[:60]}") from None
    if (not (math.isfinite(max_error) and max_error >= 0 and math.isfinite(step) and step > 0)
            or isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= n_voxels):
        raise FormatError(f"{where} have an invalid max_error, step or count: {str(meta)[:60]}")
    names = [f"{index}/{POSITIONS}", f"{index}/{VALUES}"]
    if count == 0:
        if any(n in arrays for n in names):
            raise FormatError(f"{where} count 0 but the file holds correction sections")
        return CorrectionLayer(max_error, step, np.zeros(0, np.int64), np.zeros(0, np.int64))
    for name in names:
        if name not in arrays:
            raise FormatError(f"{source}: section {name!r} is missing")
    gaps = from_varint_bytes(arrays[names[0]], count, f"{source}: section {names[0]!r}")
    zigzag = from_varint_bytes(arrays[names[1]], count, f"{source}: section {names[1]!r}")
    if gaps.min() < 0:
        raise FormatError(f"{source}: section {names[0]!r} holds a gap past 2^63")
    positions = np.cumsum(gaps + 1) - 1
    if positions[-1] >= n_voxels or positions[-1] < gaps[-1]:  # (an overflow would wrap below a gap)
        raise FormatError(f"{source}: section {names[0]!r} points past the grid's {n_voxels} voxels")
    values = (zigzag >> 1) ^ -(zigzag & 1)
    if not values.all():
        raise FormatError(f"{source}: section {names[1]!r} holds a zero correction")
    return CorrectionLayer(max_error, step, positions, values)


def varint_bytes(values: np.ndarray) -> np.ndarray:
    """Little-endian base-128 bytes of non-negative int64 ``values`` (high bit: more follow)."""
    v = values.astype(np.uint64)
    length = np.ones(v.size, dtype=np.int64)
    rest = v >> np.uint64(7)
    while rest.any():
        length += rest > 0
        rest >>= np.uint64(7)
    starts = np.cumsum(length) - length
    out = np.empty(int(length.sum()), dtype=np.uint8)
    for j in range(int(length.max(initial=0))):
        sel = length > j
        digit = (v[sel] >> np.uint64(7 * j)) & np.uint64(0x7F)
        more = (length[sel] > j + 1).astype(np.uint64) << np.uint64(7)
        out[starts[sel] + j] = (digit | more).astype(np.uint8)
    return out


def from_varint_bytes(symbols: np.ndarray, count: int, where: str) -> np.ndarray:
    """``count`` int64 values back from :func:`varint_bytes`; a FormatError if they are not there."""
    b = np.asarray(symbols).view(np.uint8).reshape(-1)
    ends = np.flatnonzero(b < 0x80)
    if ends.size != count or (b.size and b[-1] >= 0x80):
        raise FormatError(f"{where} holds {ends.size} varints, {count} expected")
    starts = np.concatenate([[0], ends[:-1] + 1])
    if (ends - starts + 1).max(initial=0) > MAX_VARINT_BYTES:
        raise FormatError(f"{where} holds a varint longer than {MAX_VARINT_BYTES} bytes")
    group = np.repeat(np.arange(count), ends - starts + 1)
    shift = (np.arange(b.size) - starts[group]) * 7
    digits = (b & 0x7F).astype(np.int64) << shift
    # the digits of one varint occupy disjoint bits: OR-ing them is their exact int64 sum
    return np.bitwise_or.reduceat(digits, starts) if count else np.zeros(0, dtype=np.int64)


# With no budget given, the network's ratio is searched: start here, double or halve while
# the whole file (network + corrections) shrinks, at most SEARCH_TRIALS fits sharing the time.
SEARCH_START_RATIO = 100.0
SEARCH_TRIALS = 4


def attach(vol, original: np.ndarray, max_error: float) -> None:
    """Give ``vol`` the corrections that bound its decode within ``max_error`` of ``original``,
    and check the bound on every voxel as :meth:`NeuralVolume.decode` will compute it."""
    from .volume import cast_to_dtype
    vol.correction = None
    values = vol.decode_values(compute="float32")   # the arithmetic every bounded decode uses
    layer = build(values, original, max_error, vol.value_range)
    layer.apply(values, vol.dims, (0, vol.dims[0] - 1, 0, vol.dims[1] - 1, 0, vol.dims[2] - 1))
    decoded = cast_to_dtype(values, original.dtype).astype(np.float64)
    worst = float(np.max(np.abs(decoded - original.astype(np.float64)))) if original.size else 0.0
    if not worst <= max_error:
        raise RuntimeError(f"internal error: corrected decode misses by {worst:g} > max error {max_error:g}")
    vol.correction = layer
    vol.invalidate_size()


def compress_bounded(compress, data: np.ndarray, max_error, **kwargs):
    """:func:`neuralvol.compress` with ``max_error``: fit (at the given budget, or the best of a
    short ratio search), then attach corrections; ``vol.bound_search`` lists the trials."""
    max_error = validate_max_error(max_error)
    lo, hi = float(np.min(data)), float(np.max(data))
    working_bound(max_error, data.dtype, (lo, hi))  # refuse an impossible bound before fitting
    searched = not any(kwargs.get(k) is not None for k in ("ratio", "bpv", "size", "psnr", "preset", "init", "config"))
    if not searched:
        vol = compress(data, **kwargs)
        attach(vol, data, max_error)
        vol.bound_search = None
        return vol
    time_budget, progress = kwargs.pop("time_budget"), kwargs.pop("progress")
    kwargs.pop("ratio")
    if time_budget is None and kwargs.get("steps") is None:
        from .compress import DEFAULT_TIME_BUDGET
        time_budget = DEFAULT_TIME_BUDGET
    share = None if time_budget is None else float(time_budget) / SEARCH_TRIALS
    tried: dict[float, object] = {}

    def trial(ratio: float):
        index = len(tried)

        def report(p):
            if progress is not None:
                return progress(type(p)((index + p.fraction) / SEARCH_TRIALS, p.psnr, p.elapsed, p.step))
        try:
            vol = compress(data, ratio=ratio, time_budget=share, progress=report, **kwargs)
        except InputError as exc:  # the budget cannot hold the header: a lower ratio can
            tried[ratio] = exc
            return math.inf
        attach(vol, data, max_error)
        tried[ratio] = vol
        return vol.nbytes

    def size_of(ratio: float) -> float:
        vol = tried[ratio]
        return math.inf if isinstance(vol, InputError) else vol.nbytes

    current = SEARCH_START_RATIO
    size = trial(current)
    direction = 2.0 if trial(2 * current) < size else 0.5
    if direction == 2.0:
        current *= 2
    while len(tried) < SEARCH_TRIALS:
        if trial(current * direction) >= size_of(current):
            break
        current *= direction
    fitted = {r: v for r, v in tried.items() if not isinstance(v, InputError)}
    if not fitted:
        raise tried[min(tried)]
    vol = fitted[min(fitted, key=lambda r: (fitted[r].nbytes, r))]
    vol.bound_search = sorted((r, v.nbytes) for r, v in fitted.items())
    return vol
