// Fused gather + trilinear interpolation of the multi-resolution hash grid on CPU.
//
// The maths is exactly neuralvol/encodings/hashgrid.py (tiny-cuda-nn's grid.h): the same
// float32 operations in the same order for positions and weights (built with
// -ffp-contract=off so no multiply-add is fused), the same uint32 prime hash and dense
// strides, the same modulo and level offsets. Only the order in which the eight corner
// products are summed may differ from PyTorch's reduction (a few ulp).
//
// Plain C ABI (loaded with ctypes, no torch headers) so it compiles in about a second.
// Work is split by level: each level owns a disjoint slice of the table, so the backward
// scatter-add needs no atomics and every thread count gives the same bits.
#include <cmath>
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#include <immintrin.h>
#endif
#include <cstdint>
#include <type_traits>
#include <vector>

#include "grid_blend.h"
#include "threads.h"

namespace {

using nv::for_each_thread;
using nv::parallel_ranges;

constexpr uint64_t kMask = 0xFFFFFFFFull;
constexpr int64_t kPrimes[3] = {1, 2654435761LL, 805459861LL};
constexpr float kCellLimit = 4.0e18f;  // < 2^62: the cell fits int64 with room for +1 and the strides' product

struct Level {
  int64_t offset, size, res;
  bool dense;
  float scale;
  uint64_t fastmod;  // Lemire's constant: a % size for any 32-bit a by two multiplies
};

// The taps of a point along one axis: lattice points cell .. cell + Taps - 1 with uniform
// B-spline weights of degree Taps - 1 (encodings/hashgrid.py's Interpolation, the same
// float32 operations in the same order): 2 = tiny-cuda-nn's linear, 3 quadratic, 4 cubic.
template <int Taps>
struct AxisTaps {
  static constexpr float kOrigin = Taps == 3 ? 0.5f : 0.0f;  // subtracted from pos before the floor
  // T: float, or a vector of floats with the same operators (the AVX-512 block path), so
  // both compute every weight with the same operations in the same order. Always inlined:
  // the vector instance must compile inside its caller's AVX-512 target (called out of line,
  // it would pass 512-bit vectors through a non-AVX-512 function).
  template <typename T>
  __attribute__((always_inline)) static inline void weights(const T& t, T* w) {
    if (Taps == 2) {
      w[0] = 1.0f - t; w[1] = t;
    } else if (Taps == 3) {
      const T s = 1.0f - t, u = t - 0.5f;
      w[0] = 0.5f * s * s; w[1] = 0.75f - u * u; w[2] = 0.5f * t * t;
    } else {
      const T s = 1.0f - t, t2 = t * t;
      const float sixth = static_cast<float>(1.0 / 6.0);
      w[0] = s * s * s * sixth;
      w[1] = (t2 * (3.0f * t - 6.0f) + 4.0f) * sixth;
      w[2] = (((-3.0f * t + 3.0f) * t + 3.0f) * t + 1.0f) * sixth;
      w[3] = t2 * t * sixth;
    }
  }
};

// Measured: the eight 64-bit divisions of a point-level were ~70% of the kernel's time.
inline uint64_t fastmod_constant(uint32_t d) { return UINT64_C(0xFFFFFFFFFFFFFFFF) / d + 1; }
inline uint32_t fastmod_u32(uint32_t a, uint64_t m, uint32_t d) {
  const uint64_t low = m * a;
  return static_cast<uint32_t>((static_cast<__uint128_t>(low) * d) >> 64);
}

template <int Taps>
struct Corners {
  static constexpr int kCount = Taps * Taps * Taps;
  int64_t index[kCount];
  float weight[kCount];
};

inline int64_t floor_mod(const Level& lv, int64_t a) {
  if (static_cast<uint64_t>(a) <= 0xFFFFFFFFull)  // every hashed index; dense ones inside [0, 1]^3
    return fastmod_u32(static_cast<uint32_t>(a), lv.fastmod, static_cast<uint32_t>(lv.size));
  const int64_t r = a % lv.size;  // points outside the unit cube (sample() outside the bounds)
  return r < 0 ? r + lv.size : r;
}

// Corner indices (into the whole table row) and weights of one point at one level; corner
// bx + Taps * by + Taps^2 * bz, as HashGridEncoding.corner_indices_weights numbers them.
// Returns false for a non-finite coordinate (its features are zero, its gradient none).
// Templated on the level kind and the taps so the inner loops carry no branch on them.
template <bool Dense, int Taps>
inline bool corners(const Level& lv, const float* xyz, Corners<Taps>& c) {
  uint64_t t[3][Taps];
  float w[3][Taps];
  const int64_t mults[3] = {Dense ? 1 : kPrimes[0], Dense ? lv.res : kPrimes[1],
                            Dense ? lv.res * lv.res : kPrimes[2]};
  for (int a = 0; a < 3; ++a) {
    float pos = xyz[a] * lv.scale;
    pos = pos + 0.5f;
    if (AxisTaps<Taps>::kOrigin != 0.0f) pos = pos - AxisTaps<Taps>::kOrigin;
    if (!(std::fabs(pos) < kCellLimit)) return false;  // NaN, inf, or far outside the cube
    // floor by truncation: baseline x86-64 (no SSE4.1 roundss) calls libm's floor, which
    // was ~40% of the kernel's time; this is exact for every |pos| < 2^62.
    int64_t cell = static_cast<int64_t>(pos);
    if (static_cast<float>(cell) > pos) --cell;
    const float frac = pos - static_cast<float>(cell);
    // Unsigned arithmetic wraps as PyTorch's int64 does (signed overflow would be undefined).
    uint64_t term = static_cast<uint64_t>(cell) * static_cast<uint64_t>(mults[a]);
    for (int k = 0; k < Taps; ++k) {
      t[a][k] = Dense ? term : (term & kMask);
      term += static_cast<uint64_t>(mults[a]);
    }
    AxisTaps<Taps>::weights(frac, w[a]);
  }
  for (int by = 0; by < Taps; ++by) {
    for (int bx = 0; bx < Taps; ++bx) {
      const uint64_t txy = Dense ? t[0][bx] + t[1][by] : (t[0][bx] ^ t[1][by]);
      const float wxy = w[0][bx] * w[1][by];
      for (int bz = 0; bz < Taps; ++bz) {
        const int corner = bx + Taps * by + Taps * Taps * bz;
        const uint64_t idx = Dense ? txy + t[2][bz] : (txy ^ t[2][bz]);
        c.index[corner] = floor_mod(lv, static_cast<int64_t>(idx)) + lv.offset;
        c.weight[corner] = wxy * w[2][bz];
      }
    }
  }
  return true;
}

template <bool Dense, int Taps>
inline void forward_point(const Level& lv, int l, const float* coords, int64_t i, int64_t n, const float* table,
                          int64_t n_entries, int n_features, int n_levels, float* out) {
  constexpr int kPlane = Taps * Taps;  // corners sharing one z tap
  Corners<Taps> c{};
  const bool ok = corners<Dense, Taps>(lv, coords + 3 * i, c);
  for (int f = 0; f < n_features; ++f) {
    float acc = 0.0f;
    if (ok) {
      const float* row = table + f * n_entries;
      if (Taps == 2) {  // one chain, in corner order: the bits PyTorch's sum gives (pinned files)
        for (int k = 0; k < Corners<Taps>::kCount; ++k) acc += row[c.index[k]] * c.weight[k];
      } else {
        // One running sum per z tap: 27 or 64 dependent adds were the kernel's critical
        // path (quadratic forward, 2^13 points, L=12, F=2: 6.6 ms; F=1 5.5, F=4 13.9).
        float part[Taps] = {};
        for (int j = 0; j < kPlane; ++j)
          for (int z = 0; z < Taps; ++z) part[z] += row[c.index[j + kPlane * z]] * c.weight[j + kPlane * z];
        for (int z = 0; z < Taps; ++z) acc += part[z];
      }
    }
    out[(static_cast<int64_t>(f) * n_levels + l) * n + i] = acc;
  }
}

template <bool Dense, int Taps>
inline void backward_point(const Level& lv, int l, const float* coords, int64_t i, int64_t n, const float* grad_out,
                           int64_t n_entries, int n_features, int n_levels, float* grad_table) {
  Corners<Taps> c{};
  if (!corners<Dense, Taps>(lv, coords + 3 * i, c)) return;
  for (int f = 0; f < n_features; ++f) {
    const float g = grad_out[(static_cast<int64_t>(f) * n_levels + l) * n + i];
    float* row = grad_table + f * n_entries;
    for (int k = 0; k < Corners<Taps>::kCount; ++k) row[c.index[k]] += g * c.weight[k];
  }
}

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define NV_POINTS_AVX512 1
// ---------------------------------------------------------------------------------------
// AVX-512: 16 points at a time. Each lane does the scalar path's float operations in the
// scalar path's order (no FMA: the build's -ffp-contract=off, and the intrinsics are separate
// mul and add), the hashed terms are the low 32 bits the scalar path masks to, and the
// modulo runs in doubles, exactly (mod16); so every output and gradient has the scalar
// path's bits (the forward sums each point's corners in corner order; the backward's
// scatter-adds run point by point, as the scalar path's do). A block with a point outside
// [0, kFastLimit) on any axis (outside the unit cube, non-finite) takes the scalar path.
// Measured on this project's 2-core EPYC, a whole training step (batch 2^13, PyTorch MLP and
// Adam included), scalar / vector ms, one thread: trilinear L=4 F=1 (neghip 800:1) 1.65 /
// 1.32, quadratic L=6 F=2 (nucleon 100:1) 10.09 / 6.13, L=8 F=2 (carotid 100:1) 14.21 /
// 9.58, L=16 F=2 (embryo 100:1) 29.38 / 22.05; two threads 1.11-1.52x. The encoding alone:
// trilinear L=4 forward 3.2x, backward 2.2x (its scatter-adds stay scalar, in order).
#pragma GCC push_options
#pragma GCC target("avx512f")

constexpr float kFastLimit = 8388608.0f;  // 2^23: the cell fits int32 and its float is exact
// A dense level's index is computed in 32 bits: below this resolution (and kDenseLimit)
// (cell + 3) * (1 + res + res^2) stays under 2^32.
constexpr int64_t kDenseFastRes = 1024;
constexpr float kDenseLimit = 1024.0f;

struct V {  // 16 floats with the scalar operators, for AxisTaps::weights
  __m512 v;
};
inline V operator+(V a, V b) { return {_mm512_add_ps(a.v, b.v)}; }
inline V operator-(V a, V b) { return {_mm512_sub_ps(a.v, b.v)}; }
inline V operator*(V a, V b) { return {_mm512_mul_ps(a.v, b.v)}; }
inline V operator+(V a, float b) { return a + V{_mm512_set1_ps(b)}; }
inline V operator-(V a, float b) { return a - V{_mm512_set1_ps(b)}; }
inline V operator*(V a, float b) { return a * V{_mm512_set1_ps(b)}; }
inline V operator+(float a, V b) { return V{_mm512_set1_ps(a)} + b; }
inline V operator-(float a, V b) { return V{_mm512_set1_ps(a)} - b; }
inline V operator*(float a, V b) { return V{_mm512_set1_ps(a)} * b; }

// a mod d for 16 uint32 lanes: the quotient estimate floor(a * (1 / d)) in doubles is within
// one of the true quotient (a < 2^32, relative error < 2^-51), the products are exact
// integers below 2^53, and one correction each way makes the remainder exact.
inline __m256i mod8(__m256i a, __m512d d, __m512d inv) {
  const __m512d x = _mm512_cvtepu32_pd(a);
  const __m512d q = _mm512_roundscale_pd(_mm512_mul_pd(x, inv), _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
  __m512d r = _mm512_sub_pd(x, _mm512_mul_pd(q, d));
  r = _mm512_mask_add_pd(r, _mm512_cmp_pd_mask(r, _mm512_setzero_pd(), _CMP_LT_OQ), r, d);
  r = _mm512_mask_sub_pd(r, _mm512_cmp_pd_mask(r, d, _CMP_GE_OQ), r, d);
  return _mm512_cvttpd_epi32(r);
}
inline __m512i mod16(__m512i a, __m512d d, __m512d inv) {
  const __m256i lo = mod8(_mm512_castsi512_si256(a), d, inv);
  const __m256i hi = mod8(_mm512_extracti64x4_epi64(a, 1), d, inv);
  return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
}

// corners() for points xyz[0..16) (AoS): false when the block must take the scalar path.
template <bool Dense, int Taps>
inline bool block_corners(const Level& lv, const float* xyz, __m512i* index, __m512* weight) {
  if (Dense && lv.res >= kDenseFastRes) return false;
  const int64_t mults[3] = {Dense ? 1 : kPrimes[0], Dense ? lv.res : kPrimes[1], Dense ? lv.res * lv.res : kPrimes[2]};
  const __m512i lane3 = _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                                           _mm512_set1_epi32(3));
  const __m512 zero = _mm512_setzero_ps(), limit = _mm512_set1_ps(Dense ? kDenseLimit : kFastLimit);
  __m512i t[3][Taps];
  V w[3][Taps];
  __mmask16 inside = 0xFFFF;
  for (int a = 0; a < 3; ++a) {
    V pos{_mm512_i32gather_ps(_mm512_add_epi32(lane3, _mm512_set1_epi32(a)), xyz, 4)};
    pos = pos * lv.scale;
    pos = pos + 0.5f;
    if (AxisTaps<Taps>::kOrigin != 0.0f) pos = pos - AxisTaps<Taps>::kOrigin;
    inside &= _mm512_cmp_ps_mask(pos.v, zero, _CMP_GE_OQ) & _mm512_cmp_ps_mask(pos.v, limit, _CMP_LT_OQ);
    const __m512i cell = _mm512_cvttps_epi32(pos.v);  // floor: pos >= 0 where it is used
    const V frac = pos - V{_mm512_cvtepi32_ps(cell)};
    const uint32_t mult = static_cast<uint32_t>(mults[a]);
    const __m512i term = _mm512_mullo_epi32(cell, _mm512_set1_epi32(static_cast<int>(mult)));
    for (int k = 0; k < Taps; ++k)
      t[a][k] = _mm512_add_epi32(term, _mm512_set1_epi32(static_cast<int>(static_cast<uint32_t>(k) * mult)));
    AxisTaps<Taps>::weights(frac, w[a]);
  }
  if (inside != 0xFFFF) return false;
  const __m512d size = _mm512_set1_pd(static_cast<double>(lv.size)), inv = _mm512_set1_pd(1.0 / static_cast<double>(lv.size));
  const __m512i offset = _mm512_set1_epi32(static_cast<int>(lv.offset));
  for (int by = 0; by < Taps; ++by) {
    for (int bx = 0; bx < Taps; ++bx) {
      const __m512i txy = Dense ? _mm512_add_epi32(t[0][bx], t[1][by]) : _mm512_xor_si512(t[0][bx], t[1][by]);
      const V wxy = w[0][bx] * w[1][by];
      for (int bz = 0; bz < Taps; ++bz) {
        const int corner = bx + Taps * by + Taps * Taps * bz;
        const __m512i idx = Dense ? _mm512_add_epi32(txy, t[2][bz]) : _mm512_xor_si512(txy, t[2][bz]);
        index[corner] = _mm512_add_epi32(mod16(idx, size, inv), offset);
        weight[corner] = (wxy * w[2][bz]).v;
      }
    }
  }
  return true;
}

// block(i0, index, weight) on every whole block of 16 points whose corners took the vector
// path; point(i) on every other point (blocks that fall back, and the tail).
template <bool Dense, int Taps, typename Block, typename Point>
inline void for_each_block(const Level& lv, const float* coords, int64_t n, Block block, Point point) {
  constexpr int kCount = Taps * Taps * Taps;
  __m512i index[kCount];
  __m512 weight[kCount];
  int64_t i0 = 0;
  for (; i0 + 16 <= n; i0 += 16) {
    if (block_corners<Dense, Taps>(lv, coords + 3 * i0, index, weight)) {
      block(i0, index, weight);
    } else {
      for (int64_t i = i0; i < i0 + 16; ++i) point(i);
    }
  }
  for (int64_t i = i0; i < n; ++i) point(i);
}

template <bool Dense, int Taps>
void forward_level_avx512(const Level& lv, int l, const float* coords, int64_t n, const float* table,
                          int64_t n_entries, int n_features, int n_levels, float* out) {
  constexpr int kCount = Taps * Taps * Taps, kPlane = Taps * Taps;
  const auto block = [&](int64_t i0, const __m512i* index, const __m512* weight) {
    for (int f = 0; f < n_features; ++f) {
      const float* row = table + f * n_entries;
      __m512 acc = _mm512_setzero_ps();
      if (Taps == 2) {
        for (int k = 0; k < kCount; ++k)
          acc = _mm512_add_ps(acc, _mm512_mul_ps(_mm512_i32gather_ps(index[k], row, 4), weight[k]));
      } else {
        __m512 part[Taps];
        for (int z = 0; z < Taps; ++z) part[z] = _mm512_setzero_ps();
        for (int j = 0; j < kPlane; ++j)
          for (int z = 0; z < Taps; ++z)
            part[z] = _mm512_add_ps(part[z], _mm512_mul_ps(_mm512_i32gather_ps(index[j + kPlane * z], row, 4),
                                                           weight[j + kPlane * z]));
        for (int z = 0; z < Taps; ++z) acc = _mm512_add_ps(acc, part[z]);
      }
      _mm512_storeu_ps(out + (static_cast<int64_t>(f) * n_levels + l) * n + i0, acc);
    }
  };
  for_each_block<Dense, Taps>(lv, coords, n, block, [&](int64_t i) {
    forward_point<Dense, Taps>(lv, l, coords, i, n, table, n_entries, n_features, n_levels, out);
  });
}

template <bool Dense, int Taps>
void backward_level_avx512(const Level& lv, int l, const float* coords, int64_t n, const float* grad_out,
                           int64_t n_entries, int n_features, int n_levels, float* grad_table) {
  constexpr int kCount = Taps * Taps * Taps;
  alignas(64) int32_t idx[kCount][16];
  alignas(64) float wgt[kCount][16];
  const auto block = [&](int64_t i0, const __m512i* index, const __m512* weight) {
    for (int k = 0; k < kCount; ++k) {
      _mm512_store_si512(idx[k], index[k]);
      _mm512_store_ps(wgt[k], weight[k]);
    }
    for (int p = 0; p < 16; ++p) {  // point by point, as the scalar path: the same sums
      for (int f = 0; f < n_features; ++f) {
        const float g = grad_out[(static_cast<int64_t>(f) * n_levels + l) * n + i0 + p];
        float* row = grad_table + f * n_entries;
        for (int k = 0; k < kCount; ++k) row[idx[k][p]] += g * wgt[k][p];
      }
    }
  };
  for_each_block<Dense, Taps>(lv, coords, n, block, [&](int64_t i) {
    backward_point<Dense, Taps>(lv, l, coords, i, n, grad_out, n_entries, n_features, n_levels, grad_table);
  });
}

#pragma GCC pop_options

bool cpu_has_avx512f() {
  static const bool yes = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") != 0;
  }();
  return yes;
}
#endif

// Whether the scattered-point kernels take the AVX-512 blocks (where the CPU has them);
// nv_points_vector switches it, so a test can compare both paths bit for bit.
bool points_vector_enabled = true;
bool points_avx512() {
#ifdef NV_POINTS_AVX512
  return points_vector_enabled && cpu_has_avx512f();
#else
  return false;
#endif
}

// Whether a level of n_entries per feature row takes the vector path (its indices are int32).
bool points_vector(int64_t n_entries) { return points_avx512() && n_entries < (int64_t{1} << 31); }

template <bool Dense, int Taps>
void forward_level(const Level& lv, int l, const float* coords, int64_t n, const float* table,
                   int64_t n_entries, int n_features, int n_levels, float* out) {
#ifdef NV_POINTS_AVX512
  if (points_vector(n_entries))
    return forward_level_avx512<Dense, Taps>(lv, l, coords, n, table, n_entries, n_features, n_levels, out);
#endif
  for (int64_t i = 0; i < n; ++i)
    forward_point<Dense, Taps>(lv, l, coords, i, n, table, n_entries, n_features, n_levels, out);
}

template <bool Dense, int Taps>
void backward_level(const Level& lv, int l, const float* coords, int64_t n, const float* grad_out,
                    int64_t n_entries, int n_features, int n_levels, float* grad_table) {
#ifdef NV_POINTS_AVX512
  if (points_vector(n_entries))
    return backward_level_avx512<Dense, Taps>(lv, l, coords, n, grad_out, n_entries, n_features, n_levels,
                                              grad_table);
#endif
  for (int64_t i = 0; i < n; ++i)
    backward_point<Dense, Taps>(lv, l, coords, i, n, grad_out, n_entries, n_features, n_levels, grad_table);
}

// Calls body(Dense, Taps) with both as compile-time constants (std::integral_constant), so a
// level's pass runs the instantiation for its kind and blend. taps is 2, 3 or 4 (the caller's
// LevelTable takes it from encodings/hashgrid.py's INTERPOLATIONS).
template <typename Body>
void with_level_kind(const Level& lv, int taps, Body body) {
  using std::integral_constant;
  const auto blend = [&](auto dense) {
    if (taps == 2) body(dense, integral_constant<int, 2>{});
    else if (taps == 3) body(dense, integral_constant<int, 3>{});
    else body(dense, integral_constant<int, 4>{});
  };
  if (lv.dense) blend(integral_constant<bool, true>{});
  else blend(integral_constant<bool, false>{});
}

// Each thread takes levels t, t + T, ...: every thread count gives the same bits.
template <typename Body>
void for_each_level(int n_levels, int n_threads, Body body) {
  if (n_threads > n_levels) n_threads = n_levels;
  if (n_threads <= 1) {
    for (int l = 0; l < n_levels; ++l) body(l);
    return;
  }
  for_each_thread(n_threads, [&](int t, int nt) {
    for (int l = t; l < n_levels; l += nt) body(l);
  });
}

std::vector<Level> make_levels(int n_levels, const int64_t* offsets, const int64_t* sizes,
                               const int64_t* res, const uint8_t* dense, const float* scales) {
  std::vector<Level> levels(n_levels);
  for (int l = 0; l < n_levels; ++l)
    levels[l] = Level{offsets[l], sizes[l], res[l], dense[l] != 0, scales[l],
                      fastmod_constant(static_cast<uint32_t>(sizes[l]))};
  return levels;
}

}  // namespace

extern "C" {

int nv_abi_version() { return 8; }

// on = 0 or 1 switches the scattered-point kernels' AVX-512 path off or on (a test hook; any
// other value only asks); returns whether it is in use now (never without AVX-512).
int nv_points_vector(int on) {
  if (on == 0 || on == 1) points_vector_enabled = on == 1;
  return points_avx512() ? 1 : 0;
}

// coords: [N, 3] row-major (x, y, z in [0, 1]); table: [F, E]; out: [F * L, N], row f * L + l.
// taps: lattice points per axis a point blends (2 linear, 3 quadratic, 4 cubic B-spline).
void nv_hashgrid_forward(const float* coords, int64_t n, const float* table, int64_t n_entries,
                         int n_features, int n_levels, const int64_t* offsets, const int64_t* sizes,
                         const int64_t* res, const uint8_t* dense, const float* scales, int taps,
                         float* out, int n_threads) {
  const std::vector<Level> levels = make_levels(n_levels, offsets, sizes, res, dense, scales);
  for_each_level(n_levels, n_threads, [&](int l) {
    with_level_kind(levels[l], taps, [&](auto dense, auto n_taps) {
      forward_level<dense, n_taps>(levels[l], l, coords, n, table, n_entries, n_features, n_levels, out);
    });
  });
}

// grad_out: [F * L, N]; grad_table: [F, E], accumulated into (the caller zeroes it).
void nv_hashgrid_backward(const float* coords, int64_t n, const float* grad_out, int64_t n_entries,
                          int n_features, int n_levels, const int64_t* offsets, const int64_t* sizes,
                          const int64_t* res, const uint8_t* dense, const float* scales, int taps,
                          float* grad_table, int n_threads) {
  const std::vector<Level> levels = make_levels(n_levels, offsets, sizes, res, dense, scales);
  for_each_level(n_levels, n_threads, [&](int l) {
    with_level_kind(levels[l], taps, [&](auto dense, auto n_taps) {
      backward_level<dense, n_taps>(levels[l], l, coords, n, grad_out, n_entries, n_features, n_levels,
                                    grad_table);
    });
  });
}

}  // extern "C"

// ---------------------------------------------------------------------------------------
// Regular grids: one level of SeparableGrid.features (neuralvol/encodings/hashgrid.py).
//
// The caller gives the level's lattice per axis (index terms tx/ty/tz of the lattice
// coordinates the output touches) and, per output coordinate, its first lattice position
// r and its weights w ([taps, n]: tap k's weight of coordinate i at w[k * n + i]; for two
// taps only the upper weight, as torch.lerp takes it). The lattice values are gathered
// once and interpolated along x into rows of the output's width; those rows are blended
// along y on each lattice z plane, once ("planes", [F][nzl][ny][nx]); every output row is
// then a z blend of taps planes' rows (grid_blend.h). Contiguous loads and stores the
// compiler vectorises; rows are split across threads (each owns its outputs).
// Measured on the 256^3 embryo 100:1 quadratic model (2 threads): blending y per output row
// instead (taps^2 row blends per output row, not taps) made the levels 0.95-1.02 s of a
// decode, planes 0.55-0.69 s.
namespace {

// blend_rows for the planes and the output rows. On x86-64 Linux with GCC it is cloned for
// AVX-512 and AVX2 and picked at load time (the build has no -march; without FMA every width
// gives the same bits); elsewhere (clang, macOS, ARM) it is built once for the baseline ISA.
#if defined(__x86_64__) && defined(__linux__) && defined(__GNUC__) && !defined(__clang__)
__attribute__((target_clones("avx512f", "avx2", "default")))
#endif
void blend_rows_any_isa(float* __restrict o, const float* const* src, const float* w, int taps, int64_t n) {
  nv::blend_rows(o, src, w, taps, n);
}

}  // namespace

extern "C" {

// The level's y-blended lattice planes into `planes` ([F][nzl][ny][nx]): what nv_grid_level
// blends along z, and what the fused grid + MLP decode (nv_grid_mlp_forward) reads.
// `rows_scratch`, F * nzl * nyl * nx floats or null, holds the x pass's rows: a caller that
// decodes block after block passes the same buffer (fresh ones cost page faults, ~20 % of
// the planes' time on the 256^3 embryo decode).
void nv_grid_level_planes(const float* table, int64_t n_entries, int n_features, int dense, int64_t size,
                          int64_t offset, const int64_t* tx, int64_t nxl, const int64_t* ty, int64_t nyl,
                          const int64_t* tz, int64_t nzl, const int64_t* rx, const float* wx, int64_t nx,
                          const int64_t* ry, const float* wy, int64_t ny, int taps, float* planes,
                          float* rows_scratch, int n_threads) {
  const Level lv{offset, size, 0, dense != 0, 0.0f, fastmod_constant(static_cast<uint32_t>(size))};
  const int64_t n_rows = nzl * nyl;
  // The x pass for all features at once: each lattice row's table indices are hashed once,
  // then every feature is gathered and interpolated at the output's x coordinates.
  std::vector<float> own(rows_scratch == nullptr ? static_cast<size_t>(n_features * n_rows * nx) : 0);
  float* const rows = rows_scratch == nullptr ? own.data() : rows_scratch;
  auto x_pass = [&](int64_t r0, int64_t r1) {
    std::vector<int64_t> index(static_cast<size_t>(nxl));
    for (int64_t r = r0; r < r1; ++r) {
      const uint64_t b = static_cast<uint64_t>(ty[r % nyl]), c = static_cast<uint64_t>(tz[r / nyl]);
      for (int64_t i = 0; i < nxl; ++i) {
        const uint64_t a = static_cast<uint64_t>(tx[i]);
        index[i] = floor_mod(lv, static_cast<int64_t>(dense ? a + b + c : (a ^ b ^ c))) + offset;
      }
      for (int f = 0; f < n_features; ++f) {
        const float* values = table + f * n_entries;
        float* orow = rows + (f * n_rows + r) * nx;
        if (taps == 2) {
          for (int64_t i = 0; i < nx; ++i)
            orow[i] = nv::lerp(values[index[rx[i]]], values[index[rx[i] + 1]], wx[i]);
          continue;
        }
        for (int64_t i = 0; i < nx; ++i) {
          float acc = values[index[rx[i]]] * wx[i];
          for (int k = 1; k < taps; ++k) acc = acc + values[index[rx[i] + k]] * wx[k * nx + i];
          orow[i] = acc;
        }
      }
    }
  };
  auto y_pass = [&](int64_t r0, int64_t r1) {  // r = lattice z plane * ny + output row j
    const float* src[nv::kMaxTaps] = {};
    float w[nv::kMaxTaps] = {};
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t kz = r / ny, j = r % ny;
      nv::tap_weights(wy, taps, ny, j, w);
      for (int f = 0; f < n_features; ++f) {
        const float* base = rows + (f * n_rows + kz * nyl + ry[j]) * nx;
        for (int t = 0; t < taps; ++t) src[t] = base + t * nx;
        blend_rows_any_isa(planes + (f * nzl * ny + r) * nx, src, w, taps, nx);
      }
    }
  };
  parallel_ranges(n_rows, n_threads, x_pass);
  parallel_ranges(nzl * ny, n_threads, y_pass);
}

// One level of features into out ([F * L, K], this level's rows feature_stride apart).
void nv_grid_level(const float* table, int64_t n_entries, int n_features, int dense, int64_t size,
                   int64_t offset, const int64_t* tx, int64_t nxl, const int64_t* ty, int64_t nyl,
                   const int64_t* tz, int64_t nzl, const int64_t* rx, const float* wx, int64_t nx,
                   const int64_t* ry, const float* wy, int64_t ny, const int64_t* rz, const float* wz,
                   int64_t nz, int taps, float* out, int64_t feature_stride, int n_threads) {
  std::vector<float> planes(static_cast<size_t>(n_features * nzl * ny * nx));
  nv_grid_level_planes(table, n_entries, n_features, dense, size, offset, tx, nxl, ty, nyl, tz, nzl, rx, wx, nx, ry,
                       wy, ny, taps, planes.data(), nullptr, n_threads);
  parallel_ranges(nz * ny, n_threads, [&](int64_t r0, int64_t r1) {  // r = output plane k * ny + row j
    for (int64_t r = r0; r < r1; ++r)
      for (int f = 0; f < n_features; ++f)
        nv::z_blend_row(blend_rows_any_isa, out + f * feature_stride + r * nx, planes.data() + f * nzl * ny * nx,
                        ny, nx, rz, wz, taps, nz, r / ny, r % ny);
  });
}

}  // extern "C"
