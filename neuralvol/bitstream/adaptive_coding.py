"""Context-adaptive binary arithmetic coding of integer symbols, for small files.

LZMA learns a byte distribution slowly: on a few hundred Laplace-distributed symbols it
spends 1.5-2x their empirical entropy (73 symbols: 62-77 bytes against 21-45). This coder
needs no stored statistics and is close to the entropy from the first symbols on:

* Binarisation: a symbol ``q`` is a zero flag, then a sign, then the bucket
  ``b = floor(log2 |q|)`` in unary, then the ``b`` bits below the leading one of ``|q|``.
  Each of these binary decisions has its own context (the mantissa bits one per bucket and
  position), so about a hundred contexts describe any unimodal distribution.
* Probabilities: Krichevsky-Trofimov estimates from each context's counts,
  ``P(0) = (2 n0 + 1) / (2 n + 2)``, which are near optimal for stationary bits and cost
  only ~0.5 log2(n) bits of learning per context. Counts-based estimates also make the
  code length computable in numpy (:func:`estimated_bits`), which rate control calls
  dozens of times; only the final file runs the coder itself.
* Segments: a run of symbols with its own statistics (hash tables, MLP) gets its own set
  of contexts.
* Range coder: LZMA's 32-bit carry-less-in-output design with 16-bit probabilities; the
  first (always zero) byte is not written and the final value is chosen with as many
  trailing zero bytes as possible, which are not written either (the decoder reads zeros
  past the end), so the flush costs one or two bytes, not five.

The coder runs in Python, one decision at a time (~1 µs each), so it is used only for
files with at most :data:`MAX_SYMBOLS` symbols; larger files are coded with LZMA, whose
gap to the entropy has shrunk to a few percent there.
"""
from __future__ import annotations

import numpy as np

PROB_BITS = 16
ONE = 1 << PROB_BITS
TOP = 1 << 24
MAX_BUCKET = 14  # |q| <= 2**15 - 1 (the quantiser's symbol limit)
MAX_SYMBOLS = 1 << 16  # bounds the Python coding time (and what a file can make us decode)
ZERO, SIGN, BUCKETS = 0, 1, 2
MANTISSA = BUCKETS + MAX_BUCKET + 1
CONTEXTS_PER_SEGMENT = MANTISSA + MAX_BUCKET * (MAX_BUCKET + 1) // 2


def _mantissa_context(bucket, position):
    """Context of mantissa bit ``position`` in ``bucket`` (ints or integer arrays)."""
    return MANTISSA + bucket * (bucket - 1) // 2 + position


def _segment_bases(segments: list[int], count: int) -> list[tuple[int, int, int]]:
    if sum(segments) != count or any(n < 0 for n in segments):
        raise ValueError(f"segments {segments} do not add up to {count} symbols")
    out, start = [], 0
    for i, n in enumerate(segments):
        out.append((start, start + n, i * CONTEXTS_PER_SEGMENT))
        start += n
    return out


def _decisions(symbols: np.ndarray, segments: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Every binary decision as (context, bit), each kind of decision in symbol order."""
    q = symbols.astype(np.int64)
    if q.size and np.abs(q).max() >= 2 ** (MAX_BUCKET + 1):
        raise ValueError(f"symbols must lie within +-{2 ** (MAX_BUCKET + 1) - 1}")
    base = np.zeros(q.size, np.int64)
    for start, stop, b in _segment_bases(segments, q.size):
        base[start:stop] = b
    ctx, bits = [base + ZERO], [q != 0]
    nz = np.flatnonzero(q)
    m = np.abs(q[nz])
    bucket = np.floor(np.log2(m)).astype(np.int64)
    ctx.append(base[nz] + SIGN), bits.append(q[nz] < 0)
    # unary bucket: b ones, then a terminating zero unless b is the largest bucket
    n_unary = bucket + (bucket < MAX_BUCKET)
    rep = np.repeat(np.arange(nz.size), n_unary)
    pos = np.arange(rep.size) - np.repeat(np.cumsum(n_unary) - n_unary, n_unary)
    ctx.append(base[nz][rep] + BUCKETS + pos), bits.append(pos < bucket[rep])
    # mantissa: the b bits under the leading one, most significant first
    rep = np.repeat(np.arange(nz.size), bucket)
    pos = np.arange(rep.size) - np.repeat(np.cumsum(bucket) - bucket, bucket)
    b = bucket[rep]
    ctx.append(base[nz][rep] + _mantissa_context(b, pos))
    bits.append(((m[rep] >> (b - 1 - pos)) & 1).astype(bool))
    return np.concatenate(ctx), np.concatenate(bits)


def _p_zero(n0, n1):
    """KT estimate of P(bit = 0) in units of 2**-16, kept inside (0, 1); works on ints and arrays."""
    p = ((2 * n0 + 1) << PROB_BITS) // (2 * (n0 + n1) + 2)
    return np.clip(p, 1, ONE - 1) if isinstance(p, np.ndarray) else min(max(p, 1), ONE - 1)


def estimated_bits(symbols: np.ndarray, segments: list[int]) -> float:
    """The ideal code length of ``symbols`` under the coder's adaptive model (numpy, fast).
    The coder's output is within a few bytes of ``estimated_bits / 8``."""
    ctx, bits = _decisions(symbols, segments)
    if ctx.size == 0:
        return 0.0
    # each context takes at most one decision per symbol and every kind of decision is
    # listed in symbol order, so a stable sort by context leaves each in coding order
    order = np.argsort(ctx, kind="stable")
    ctx, bits = ctx[order], bits[order].astype(np.int64)
    run_start = np.flatnonzero(np.r_[True, ctx[1:] != ctx[:-1]])
    run_len = np.diff(np.r_[run_start, ctx.size])
    seen = np.arange(ctx.size) - np.repeat(run_start, run_len)  # decisions before, same context
    ones_incl = np.cumsum(bits)
    ones_before = ones_incl - bits - np.repeat(ones_incl[run_start] - bits[run_start], run_len)
    p0 = _p_zero(seen - ones_before, ones_before)
    p = np.where(bits == 0, p0, ONE - p0)
    return float(np.sum(PROB_BITS - np.log2(p)))


class _Encoder:
    def __init__(self):
        self.low, self.range, self.cache, self.pending = 0, 0xFFFFFFFF, 0, 1
        self.out = bytearray()

    def bit(self, p0: int, bit: int) -> None:
        bound = (self.range >> PROB_BITS) * p0
        if bit:
            self.low += bound
            self.range -= bound
        else:
            self.range = bound
        while self.range < TOP:
            self.range <<= 8
            self._shift()

    def _shift(self) -> None:
        if self.low < 0xFF000000 or self.low >= 1 << 32:
            carry = self.low >> 32
            byte = self.cache
            while self.pending:
                self.out.append((byte + carry) & 0xFF)
                byte = 0xFF
                self.pending -= 1
            self.cache = (self.low >> 24) & 0xFF
        self.pending += 1
        self.low = (self.low & 0x00FFFFFF) << 8

    def finish(self) -> bytes:
        # the value in [low, low + range) with the most trailing zero bytes
        for keep in range(1, 5):
            unit = 1 << (32 - 8 * keep)
            value = -(-self.low // unit) * unit
            if value < self.low + self.range:
                self.low = value
                break
        for _ in range(5):
            self._shift()
        return bytes(self.out[1:]).rstrip(b"\0")  # the first byte is always zero


class _Decoder:
    def __init__(self, data: bytes):
        self.data, self.pos = data, 4
        self.range = 0xFFFFFFFF
        self.code = int.from_bytes(data[:4].ljust(4, b"\0"), "big")

    def bit(self, p0: int) -> int:
        bound = (self.range >> PROB_BITS) * p0
        if self.code < bound:
            self.range = bound
            bit = 0
        else:
            self.code -= bound
            self.range -= bound
            bit = 1
        while self.range < TOP:
            self.range <<= 8
            byte = self.data[self.pos] if self.pos < len(self.data) else 0
            self.code = ((self.code << 8) | byte) & 0xFFFFFFFF
            self.pos += 1
        return bit


def encode(symbols: np.ndarray, segments: list[int]) -> bytes:
    """Code ``symbols`` (|q| < 2**15), each segment with its own contexts."""
    q = [int(v) for v in symbols]
    if len(q) > MAX_SYMBOLS:
        raise ValueError(f"the adaptive coder takes at most {MAX_SYMBOLS} symbols, got {len(q)}")
    if q and max(abs(v) for v in q) >= 2 ** (MAX_BUCKET + 1):
        raise ValueError(f"symbols must lie within +-{2 ** (MAX_BUCKET + 1) - 1}")
    n0 = [0] * (CONTEXTS_PER_SEGMENT * max(1, len(segments)))
    n1 = list(n0)
    enc = _Encoder()

    def put(c: int, bit: int) -> None:
        enc.bit(_p_zero(n0[c], n1[c]), bit)
        if bit:
            n1[c] += 1
        else:
            n0[c] += 1

    for start, stop, base in _segment_bases(list(segments), len(q)):
        for v in q[start:stop]:
            put(base + ZERO, v != 0)
            if v == 0:
                continue
            put(base + SIGN, v < 0)
            m = abs(v)
            bucket = m.bit_length() - 1
            for i in range(bucket):
                put(base + BUCKETS + i, 1)
            if bucket < MAX_BUCKET:
                put(base + BUCKETS + bucket, 0)
            for j in range(bucket):
                put(base + _mantissa_context(bucket, j), (m >> (bucket - 1 - j)) & 1)
    return enc.finish()


def decode(data: bytes, segments: list[int], count: int) -> np.ndarray:
    """The ``count`` symbols coded in ``data`` (int32). Never reads past ``count`` symbols,
    so a corrupted stream yields wrong symbols (the container's CRC catches it), not a hang."""
    if count > MAX_SYMBOLS:
        raise ValueError(f"the adaptive coder holds at most {MAX_SYMBOLS} symbols, the file says {count}")
    n0 = [0] * (CONTEXTS_PER_SEGMENT * max(1, len(segments)))
    n1 = list(n0)
    dec = _Decoder(data)
    out = np.zeros(count, np.int32)

    def get(c: int) -> int:
        bit = dec.bit(_p_zero(n0[c], n1[c]))
        if bit:
            n1[c] += 1
        else:
            n0[c] += 1
        return bit

    for start, stop, base in _segment_bases(list(segments), count):
        for k in range(start, stop):
            if not get(base + ZERO):
                continue
            negative = get(base + SIGN)
            bucket = 0
            while bucket < MAX_BUCKET and get(base + BUCKETS + bucket):
                bucket += 1
            m = 1
            for j in range(bucket):
                m = (m << 1) | get(base + _mantissa_context(bucket, j))
            out[k] = -m if negative else m
    return out
