// Blends of whole rows, shared by the separable grid decode (hashgrid_cpu.cpp) and the
// fused grid + MLP decode (mlp_cpu.cpp), so both round alike: a level's value on the output
// grid is blended along y on each lattice z plane, then along z, row by row.
#pragma once

#include <cstdint>

namespace nv {

constexpr int kMaxTaps = 4;

// torch.lerp's formula, so the kernels and the PyTorch path round alike.
inline float lerp(float a, float b, float w) {
  return w < 0.5f ? a + w * (b - a) : b - (b - a) * (1.0f - w);
}

// o = blend of `taps` rows src[0..taps-1]: two taps are torch.lerp with the upper weight
// w[1]; more are src[0] * w[0] + src[1] * w[1] + ..., summed in that order (the PyTorch
// path's mul then addcmul). Built with -ffp-contract=off: no fused multiply-add, so every
// vector width gives the same bits.
inline void blend_rows(float* __restrict o, const float* const* src, const float* w, int taps, int64_t n) {
  if (taps == 2) {
    const float* __restrict a = src[0];
    const float* __restrict b = src[1];
    const float wb = w[1];
    for (int64_t i = 0; i < n; ++i) o[i] = lerp(a[i], b[i], wb);
    return;
  }
  const float* __restrict a = src[0];
  const float w0 = w[0];
  for (int64_t i = 0; i < n; ++i) o[i] = a[i] * w0;
  for (int k = 1; k < taps; ++k) {
    const float* __restrict b = src[k];
    const float wk = w[k];
    for (int64_t i = 0; i < n; ++i) o[i] = o[i] + b[i] * wk;
  }
}

// The weights of output coordinate i (of n) along an axis, as blend_rows takes them: for two
// taps the caller's array holds only the upper weights ([n]), else [taps, n].
inline void tap_weights(const float* w, int taps, int64_t n, int64_t i, float* out) {
  if (taps == 2) {  // blend_rows reads the upper weight alone
    out[1] = w[i];
    return;
  }
  for (int k = 0; k < taps; ++k) out[k] = w[k * n + i];
}

// Output row (k, j) of one feature of one level: a z blend of the level's y-blended lattice
// planes ([nzl][ny][nx], plane rz[k] + t for tap t), by `blend` (blend_rows or a clone of it).
template <typename Blend>
inline void z_blend_row(Blend blend, float* __restrict o, const float* planes, int64_t ny, int64_t nx,
                        const int64_t* rz, const float* wz, int taps, int64_t nz, int64_t k, int64_t j) {
  const float* src[kMaxTaps] = {};
  float w[kMaxTaps] = {};
  tap_weights(wz, taps, nz, k, w);
  const float* base = planes + (rz[k] * ny + j) * nx;
  for (int t = 0; t < taps; ++t) src[t] = base + t * ny * nx;
  blend(o, src, w, taps, nx);
}

}  // namespace nv
