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
#include <cstdint>
#include <vector>

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

// Measured: the eight 64-bit divisions of a point-level were ~70% of the kernel's time.
inline uint64_t fastmod_constant(uint32_t d) { return UINT64_C(0xFFFFFFFFFFFFFFFF) / d + 1; }
inline uint32_t fastmod_u32(uint32_t a, uint64_t m, uint32_t d) {
  const uint64_t low = m * a;
  return static_cast<uint32_t>((static_cast<__uint128_t>(low) * d) >> 64);
}

struct Corners {
  int64_t index[8];
  float weight[8];
};

inline int64_t floor_mod(const Level& lv, int64_t a) {
  if (static_cast<uint64_t>(a) <= 0xFFFFFFFFull)  // every hashed index; dense ones inside [0, 1]^3
    return fastmod_u32(static_cast<uint32_t>(a), lv.fastmod, static_cast<uint32_t>(lv.size));
  const int64_t r = a % lv.size;  // points outside the unit cube (sample() outside the bounds)
  return r < 0 ? r + lv.size : r;
}

// Corner indices (into the whole table row) and weights of one point at one level.
// Returns false for a non-finite coordinate (its features are zero, its gradient none).
// Templated on the level kind so the inner loops carry no branch on it.
template <bool Dense>
inline bool corners(const Level& lv, const float* xyz, Corners& c) {
  uint64_t t[3][2];
  float w[3][2];
  const int64_t mults[3] = {Dense ? 1 : kPrimes[0], Dense ? lv.res : kPrimes[1],
                            Dense ? lv.res * lv.res : kPrimes[2]};
  for (int a = 0; a < 3; ++a) {
    float pos = xyz[a] * lv.scale;
    pos = pos + 0.5f;
    if (!(std::fabs(pos) < kCellLimit)) return false;  // NaN, inf, or far outside the cube
    // floor by truncation: baseline x86-64 (no SSE4.1 roundss) calls libm's floor, which
    // was ~40% of the kernel's time; this is exact for every |pos| < 2^62.
    int64_t cell = static_cast<int64_t>(pos);
    if (static_cast<float>(cell) > pos) --cell;
    const float frac = pos - static_cast<float>(cell);
    // Unsigned arithmetic wraps as PyTorch's int64 does (signed overflow would be undefined).
    uint64_t t0 = static_cast<uint64_t>(cell) * static_cast<uint64_t>(mults[a]);
    uint64_t t1 = t0 + static_cast<uint64_t>(mults[a]);
    if (!Dense) {
      t0 &= kMask;
      t1 &= kMask;
    }
    t[a][0] = t0; t[a][1] = t1;
    w[a][0] = 1.0f - frac; w[a][1] = frac;
  }
  for (int by = 0; by < 2; ++by) {
    for (int bx = 0; bx < 2; ++bx) {
      const uint64_t txy = Dense ? t[0][bx] + t[1][by] : (t[0][bx] ^ t[1][by]);
      const float wxy = w[0][bx] * w[1][by];
      for (int bz = 0; bz < 2; ++bz) {
        const int corner = bx | (by << 1) | (bz << 2);
        const uint64_t idx = Dense ? txy + t[2][bz] : (txy ^ t[2][bz]);
        c.index[corner] = floor_mod(lv, static_cast<int64_t>(idx)) + lv.offset;
        c.weight[corner] = wxy * w[2][bz];
      }
    }
  }
  return true;
}

template <bool Dense>
void forward_level(const Level& lv, int l, const float* coords, int64_t n, const float* table,
                   int64_t n_entries, int n_features, int n_levels, float* out) {
  Corners c;
  for (int64_t i = 0; i < n; ++i) {
    const bool ok = corners<Dense>(lv, coords + 3 * i, c);
    for (int f = 0; f < n_features; ++f) {
      float acc = 0.0f;
      if (ok) {
        const float* row = table + f * n_entries;
        for (int k = 0; k < 8; ++k) acc += row[c.index[k]] * c.weight[k];
      }
      out[(static_cast<int64_t>(f) * n_levels + l) * n + i] = acc;
    }
  }
}

template <bool Dense>
void backward_level(const Level& lv, int l, const float* coords, int64_t n, const float* grad_out,
                    int64_t n_entries, int n_features, int n_levels, float* grad_table) {
  Corners c;
  for (int64_t i = 0; i < n; ++i) {
    if (!corners<Dense>(lv, coords + 3 * i, c)) continue;
    for (int f = 0; f < n_features; ++f) {
      const float g = grad_out[(static_cast<int64_t>(f) * n_levels + l) * n + i];
      float* row = grad_table + f * n_entries;
      for (int k = 0; k < 8; ++k) row[c.index[k]] += g * c.weight[k];
    }
  }
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

int nv_abi_version() { return 2; }

// coords: [N, 3] row-major (x, y, z in [0, 1]); table: [F, E]; out: [F * L, N], row f * L + l.
void nv_hashgrid_forward(const float* coords, int64_t n, const float* table, int64_t n_entries,
                         int n_features, int n_levels, const int64_t* offsets, const int64_t* sizes,
                         const int64_t* res, const uint8_t* dense, const float* scales, float* out,
                         int n_threads) {
  const std::vector<Level> levels = make_levels(n_levels, offsets, sizes, res, dense, scales);
  for_each_level(n_levels, n_threads, [&](int l) {
    if (levels[l].dense)
      forward_level<true>(levels[l], l, coords, n, table, n_entries, n_features, n_levels, out);
    else
      forward_level<false>(levels[l], l, coords, n, table, n_entries, n_features, n_levels, out);
  });
}

// grad_out: [F * L, N]; grad_table: [F, E], accumulated into (the caller zeroes it).
void nv_hashgrid_backward(const float* coords, int64_t n, const float* grad_out, int64_t n_entries,
                          int n_features, int n_levels, const int64_t* offsets, const int64_t* sizes,
                          const int64_t* res, const uint8_t* dense, const float* scales,
                          float* grad_table, int n_threads) {
  const std::vector<Level> levels = make_levels(n_levels, offsets, sizes, res, dense, scales);
  for_each_level(n_levels, n_threads, [&](int l) {
    if (levels[l].dense)
      backward_level<true>(levels[l], l, coords, n, grad_out, n_entries, n_features, n_levels, grad_table);
    else
      backward_level<false>(levels[l], l, coords, n, grad_out, n_entries, n_features, n_levels, grad_table);
  });
}

}  // extern "C"

// ---------------------------------------------------------------------------------------
// Regular grids: one level of SeparableGrid.features (neuralvol/encodings/hashgrid.py).
//
// The caller gives the level's lattice per axis (index terms tx/ty/tz of the lattice
// coordinates the output touches) and, per output coordinate, its lower lattice position
// r and upper weight w. The lattice values are gathered once, interpolated along x into
// rows of the output's width, and every output row is then a bilinear blend (y, z) of
// four such rows: contiguous loads and stores the compiler vectorises. Measured against
// the same algorithm in PyTorch ops (three lerp passes, ~60% of a 256^3 decode): see
// benchmarks/speed.py. Rows are split across threads (each owns its outputs).
namespace {

// torch.lerp's formula, so the kernel and the PyTorch path round alike.
inline float lerp(float a, float b, float w) {
  return w < 0.5f ? a + w * (b - a) : b - (b - a) * (1.0f - w);
}

}  // namespace

extern "C" {

void nv_grid_level(const float* table, int64_t n_entries, int n_features, int dense, int64_t size,
                   int64_t offset, const int64_t* tx, int64_t nxl, const int64_t* ty, int64_t nyl,
                   const int64_t* tz, int64_t nzl, const int64_t* rx, const float* wx, int64_t nx,
                   const int64_t* ry, const float* wy, int64_t ny, const int64_t* rz, const float* wz,
                   int64_t nz, float* out, int64_t feature_stride, int n_threads) {
  const Level lv{offset, size, 0, dense != 0, 0.0f, fastmod_constant(static_cast<uint32_t>(size))};
  const int64_t n_rows = nzl * nyl;
  // The x pass for all features at once: each lattice row's table indices are hashed once,
  // then every feature is gathered and interpolated at the output's x coordinates.
  std::vector<float> rows(static_cast<size_t>(n_features * n_rows * nx));
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
        float* orow = rows.data() + (f * n_rows + r) * nx;
        for (int64_t i = 0; i < nx; ++i)
          orow[i] = lerp(values[index[rx[i]]], values[index[rx[i] + 1]], wx[i]);
      }
    }
  };
  // y then z: each output row from four x-interpolated lattice rows (contiguous, vectorised)
  auto yz_pass = [&](int64_t k0, int64_t k1) {
    for (int f = 0; f < n_features; ++f) {
      const float* frows = rows.data() + f * n_rows * nx;
      float* dst = out + f * feature_stride;
      for (int64_t k = k0; k < k1; ++k) {
        const float w_z = wz[k];
        for (int64_t j = 0; j < ny; ++j) {
          const float w_y = wy[j];
          const float* a = frows + (rz[k] * nyl + ry[j]) * nx;
          const float* b = a + nx;
          const float* c = a + nyl * nx;
          const float* d = c + nx;
          float* o = dst + (k * ny + j) * nx;
          for (int64_t i = 0; i < nx; ++i) o[i] = lerp(lerp(a[i], b[i], w_y), lerp(c[i], d[i], w_y), w_z);
        }
      }
    }
  };
  parallel_ranges(n_rows, n_threads, x_pass);
  parallel_ranges(nz, n_threads, yz_pass);
}

}  // extern "C"
