// The post filter (neuralvol/postfilter.py) applied to a block of network values, row by row.
//
// The kernel of radius r has one weight per class of offsets (|dz|, |dy|, |dx|), so an output
// row is, for each (|dz|, |dy|) class, the sum of the 1, 2 or 4 source rows at (+-dz, +-dy)
// filtered along x by that class's symmetric (2r + 1)-tap weights. One output row reads its
// (2r + 1)^2 source rows once, while they are in L1/L2, and writes its values once.
// PyTorch's version (apply_padded without the kernel) made each offset class's sum as a
// whole-slab tensor and added it to the output: ~50 passes over 1 MB slabs, 0.27-0.30 s of a
// 256^3 embryo decode with a 5x5x5 kernel on 2 cores (this session's Xeon), a third of the
// bf16 decode.
//
// Sums are float32 in a fixed order per voxel (class rows, then taps outward), so any thread
// count and any block around a voxel give the same bits; they differ from PyTorch's order by
// float32 rounding (~1e-7 of the values).
#include <cstdint>
#include <cstring>
#include <vector>

#include "threads.h"

namespace {

constexpr int kMaxRadius = 2;

// Output row (z, y) of the filter: src is the padded block [nz + 2r][ny + 2r][nx + 2r], out
// [nz][ny][nx]; w are the (r + 1)^3 class weights (class (az (r + 1) + ay) (r + 1) + ax),
// already scaled, `offset` the scaled constant; `rows` a buffer of nx + 2r floats.
void filter_row(const float* __restrict src, int64_t ny, int64_t nx, int r, const float* w, float offset,
                int64_t z, int64_t y, float* __restrict out, float* __restrict rows) {
  const int64_t px = nx + 2 * r, py = ny + 2 * r;
  for (int64_t x = 0; x < nx; ++x) out[x] = offset;
  for (int az = 0; az <= r; ++az)
    for (int ay = 0; ay <= r; ++ay) {
      // the class's source rows summed: (z + r +- az, y + r +- ay), each once
      const float* first = src + ((z + r - az) * py + (y + r - ay)) * px;
      std::memcpy(rows, first, px * sizeof(float));
      const int64_t dzs[2] = {-az, az}, dys[2] = {-ay, ay};
      for (int iz = 0; iz < (az ? 2 : 1); ++iz)
        for (int iy = 0; iy < (ay ? 2 : 1); ++iy) {
          if (iz == 0 && iy == 0) continue;
          const float* row = src + ((z + r + dzs[iz]) * py + (y + r + dys[iy])) * px;
          for (int64_t x = 0; x < px; ++x) rows[x] += row[x];
        }
      const float* wc = w + (az * (r + 1) + ay) * (r + 1);
      const float w0 = wc[0];
      for (int64_t x = 0; x < nx; ++x) out[x] += w0 * rows[x + r];
      for (int ax = 1; ax <= r; ++ax) {
        const float wa = wc[ax];
        if (wa == 0.0f) continue;
        for (int64_t x = 0; x < nx; ++x) out[x] += wa * (rows[x + r - ax] + rows[x + r + ax]);
      }
    }
}

}  // namespace

extern "C" {

// The filtered values [nz][ny][nx] of a block from its values grown by r on every side
// (src [nz + 2r][ny + 2r][nx + 2r]); weights: (r + 1)^3 class weights, scaled. Returns 0, or -1
// for a radius this kernel does not take (nothing written).
int nv_postfilter_padded(const float* src, int64_t nz, int64_t ny, int64_t nx, int radius, const float* weights,
                         float offset, float* out, int n_threads) {
  if (radius < 1 || radius > kMaxRadius || nz < 1 || ny < 1 || nx < 1) return -1;
  nv::parallel_ranges(nz * ny, n_threads, [&](int64_t r0, int64_t r1) {
    std::vector<float> rows(static_cast<size_t>(nx + 2 * radius));
    for (int64_t row = r0; row < r1; ++row) {
      const int64_t z = row / ny, y = row % ny;
      filter_row(src, ny, nx, radius, weights, offset, z, y, out + (z * ny + y) * nx, rows.data());
    }
  });
  return 0;
}

}  // extern "C"
