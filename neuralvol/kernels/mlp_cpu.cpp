// The decoder's MLP (ReLU hidden layers, linear output with bias) on CPU, fused per tile.
//
// Decoding runs the same tiny MLP (32 -> 64 -> 64 -> 1 for a 100:1 model) on millions of
// voxels. Through oneDNN each layer is a skinny GEMM plus separate passes for the ReLU, the
// bf16 casts and the output layer, each streaming [K, 64] activations through memory:
// measured on this project's 2-core EPYC (Zen 4), 256^3 voxels, 2 threads, bf16: GEMMs
// 0.67 s, the other passes 0.47 s. Here a tile of 32 voxels goes through every layer while
// its activations stay in L1 (2 x 64 x 32 floats), the ReLU and the casts are done on the
// accumulators, and the output layer reads the last hidden layer's fp32 activations from L1.
// Same model, same machine: the MLP of a 256^3 decode 1.92 -> 1.06 s fp32, 1.74 -> 0.65 s bf16.
//
// Layout: the batch is the vector lane. The input is feature-major ([F * L, K], as the
// encodings write it), so a tile's rows are contiguous 16-float loads; each weight is
// broadcast against 16 voxels. Output neurons are taken 8 at a time: 8 x 2 vector
// accumulators (16 of the 32 zmm registers).
//
// fp32: AVX-512F fused multiply-adds. bf16 (compute="bfloat16"): AVX512-BF16 vdpbf16ps
// multiplies pairs of bf16 inputs and accumulates in fp32; inputs and hidden activations are
// rounded to bf16 (round to nearest even, as torch's .to(bfloat16)), the output layer runs
// in fp32 on the fp32 activations. Sums are in a fixed order per voxel: every thread count
// gives the same bits. Without AVX-512 the caller keeps torch's GEMMs (nv_mlp_isa() == 0).
#include <immintrin.h>

#include <cstdint>
#include <cstring>
#include <vector>

#include "grid_blend.h"
#include "threads.h"

namespace {

// Register blocking, measured (32 -> 64 -> 64 -> 1, 2^18 voxels, 2 threads, fp32 / bf16 ms):
// 2 vectors x 8 neurons 16.5-17.7 / 10.1-11.3, 4 x 4 16.1-16.9 / 10.1-10.7, 3 x 8 17.7 / 11.0,
// 2 x 12 19.8 / 13.8, 1 x 16 19.6 / 11.7; 5 or more vectors spill the accumulators. Neurons in
// the lanes instead (oneDNN's batch-major layout, one broadcast per voxel and input) measured
// the same at width 64 and 14-35% slower at widths 16-32: its output layer needs horizontal sums.
constexpr int kVectors = 2;          // 16-lane vectors per tile
constexpr int kTile = 16 * kVectors; // voxels per tile
constexpr int kBlock = 8;            // output neurons per register block

inline int round_up(int n, int m) { return (n + m - 1) / m * m; }

// Round to nearest even, NaN kept a NaN: what torch's .to(bfloat16) and vcvtneps2bf16 do.
inline uint32_t bf16_bits(float x) {
  uint32_t u;
  std::memcpy(&u, &x, sizeof u);
  if ((u & 0x7FFFFFFFu) > 0x7F800000u) return (u >> 16) | 0x40u;
  return (u + 0x7FFFu + ((u >> 16) & 1u)) >> 16;
}

struct Layer {
  int fan_in, fan_out, out_pad;
  const float* w;  // [fan_out, fan_in] row-major
};

// fp32 weights as [out_pad / 8][fan_in][8]: one block's 8 broadcasts are adjacent.
std::vector<float> pack_fp32(const Layer& L) {
  std::vector<float> p(static_cast<size_t>(L.out_pad) * L.fan_in, 0.0f);
  for (int j = 0; j < L.fan_out; ++j)
    for (int i = 0; i < L.fan_in; ++i)
      p[(static_cast<size_t>(j / kBlock) * L.fan_in + i) * kBlock + j % kBlock] = L.w[j * L.fan_in + i];
  return p;
}

// bf16 weights as [out_pad / 8][in_pairs][8] uint32: W[j][2p] in the low half, W[j][2p+1]
// in the high half, as vdpbf16ps pairs them; columns past fan_in (padding) are zero.
std::vector<uint32_t> pack_bf16(const Layer& L, int in_pairs) {
  std::vector<uint32_t> p(static_cast<size_t>(L.out_pad) * in_pairs, 0u);
  for (int j = 0; j < L.fan_out; ++j)
    for (int i = 0; i < L.fan_in; ++i)
      p[(static_cast<size_t>(j / kBlock) * in_pairs + i / 2) * kBlock + j % kBlock] |=
          bf16_bits(L.w[j * L.fan_in + i]) << (16 * (i % 2));
  return p;
}

#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512bf16")

// The two arithmetics: fp32 inputs times fp32 weights, or bf16 pairs times bf16 pairs (vdpbf16ps
// adds both products), each accumulating in fp32 with the weight broadcast to 16 voxels.
struct Fp32Math {
  using Value = float;
  using Vector = __m512;
  static Vector load(const float* p) { return _mm512_loadu_ps(p); }
  static __m512 madd(__m512 acc, Vector x, float w) { return _mm512_fmadd_ps(_mm512_set1_ps(w), x, acc); }
};
struct Bf16Math {
  using Value = uint32_t;
  using Vector = __m512bh;
  static Vector load(const uint32_t* p) { return reinterpret_cast<__m512bh>(_mm512_loadu_si512(p)); }
  static __m512 madd(__m512 acc, Vector x, uint32_t w) {
    return _mm512_dpbf16_ps(acc, x, reinterpret_cast<__m512bh>(_mm512_set1_epi32(static_cast<int>(w))));
  }
};

// One block of 8 neurons on one tile, ReLU'd: inputs in rows ld apart (n of them: inputs or
// pairs), weights wb [n][8] -> acc[neuron][vector].
template <typename Math>
inline void relu_block(const typename Math::Value* in, int64_t ld, int n, const typename Math::Value* wb,
                       __m512 (&acc)[kBlock][kVectors]) {
#pragma GCC unroll 16
  for (int j = 0; j < kBlock; ++j)
#pragma GCC unroll 4
    for (int v = 0; v < kVectors; ++v) acc[j][v] = _mm512_setzero_ps();
  for (int i = 0; i < n; ++i) {
    typename Math::Vector x[kVectors];
#pragma GCC unroll 4
    for (int v = 0; v < kVectors; ++v) x[v] = Math::load(in + i * ld + 16 * v);
    const typename Math::Value* w = wb + i * kBlock;
#pragma GCC unroll 16
    for (int j = 0; j < kBlock; ++j)
#pragma GCC unroll 4
      for (int v = 0; v < kVectors; ++v) acc[j][v] = Math::madd(acc[j][v], x[v], w[j]);
  }
  const __m512 zero = _mm512_setzero_ps();
#pragma GCC unroll 16
  for (int j = 0; j < kBlock; ++j)
#pragma GCC unroll 4
    for (int v = 0; v < kVectors; ++v) acc[j][v] = _mm512_max_ps(acc[j][v], zero);
}

// A hidden layer on one tile: in [fan_in][ld] fp32 -> relu -> out [out_pad][kTile] fp32.
void hidden_fp32(const float* in, int64_t ld, int fan_in, const float* wp, int out_pad, float* out) {
  for (int j0 = 0; j0 < out_pad; j0 += kBlock) {
    __m512 acc[kBlock][kVectors];
    relu_block<Fp32Math>(in, ld, fan_in, wp + static_cast<int64_t>(j0) * fan_in, acc);
#pragma GCC unroll 16
    for (int j = 0; j < kBlock; ++j)
#pragma GCC unroll 4
      for (int v = 0; v < kVectors; ++v) _mm512_storeu_ps(out + (j0 + j) * kTile + 16 * v, acc[j][v]);
  }
}

// Two fp32 vectors (inputs 2p and 2p + 1 of 16 voxels) -> 16 bf16 pairs, lane by lane.
inline __m512i pack_pairs(__m512 even, __m512 odd) {
  const __m512i lo = _mm512_cvtepu16_epi32(reinterpret_cast<__m256i>(_mm512_cvtneps_pbh(even)));
  const __m512i hi = _mm512_cvtepu16_epi32(reinterpret_cast<__m256i>(_mm512_cvtneps_pbh(odd)));
  return _mm512_or_si512(lo, _mm512_slli_epi32(hi, 16));
}

// fp32 rows [n][ld] -> bf16 pairs [ceil(n / 2)][kTile] (a missing odd row is zero)
void to_pairs(const float* in, int64_t ld, int n, uint32_t* out) {
  for (int p = 0; p < (n + 1) / 2; ++p)
    for (int h = 0; h < kVectors; ++h) {
      const __m512 even = _mm512_loadu_ps(in + 2 * p * ld + 16 * h);
      const __m512 odd = 2 * p + 1 < n ? _mm512_loadu_ps(in + (2 * p + 1) * ld + 16 * h) : _mm512_setzero_ps();
      _mm512_storeu_si512(out + p * kTile + 16 * h, pack_pairs(even, odd));
    }
}

// A hidden layer in bf16 on one tile: in [pairs][kTile] -> relu -> bf16 pairs
// [out_pad / 2][kTile] for the next hidden layer, or fp32 [out_pad][kTile] for the output.
void hidden_bf16(const uint32_t* in, int pairs, const uint32_t* wp, int out_pad, uint32_t* out_pairs,
                 float* out_fp32) {
  for (int j0 = 0; j0 < out_pad; j0 += kBlock) {
    __m512 acc[kBlock][kVectors];
    relu_block<Bf16Math>(in, kTile, pairs, wp + static_cast<int64_t>(j0) * pairs, acc);
    if (out_fp32 != nullptr) {
#pragma GCC unroll 16
      for (int j = 0; j < kBlock; ++j)
#pragma GCC unroll 4
        for (int v = 0; v < kVectors; ++v) _mm512_storeu_ps(out_fp32 + (j0 + j) * kTile + 16 * v, acc[j][v]);
    } else {
#pragma GCC unroll 8
      for (int j = 0; j < kBlock; j += 2)
#pragma GCC unroll 4
        for (int h = 0; h < kVectors; ++h)
          _mm512_storeu_si512(out_pairs + (j0 + j) / 2 * kTile + 16 * h, pack_pairs(acc[j][h], acc[j + 1][h]));
    }
  }
}

// The linear output layer on one tile: h [width][ld] fp32 -> res [kTile][c] (+ bias).
void output_fp32(const float* h, int64_t ld, int width, const float* w, int c_out, const float* bias, float* res) {
  for (int c = 0; c < c_out; ++c) {
    __m512 a[kVectors];
#pragma GCC unroll 4
    for (int v = 0; v < kVectors; ++v) a[v] = _mm512_setzero_ps();
    const float* wc = w + c * width;
    for (int j = 0; j < width; ++j) {
      const __m512 wv = _mm512_set1_ps(wc[j]);
#pragma GCC unroll 4
      for (int v = 0; v < kVectors; ++v) a[v] = _mm512_fmadd_ps(wv, _mm512_loadu_ps(h + j * ld + 16 * v), a[v]);
    }
    const __m512 b = _mm512_set1_ps(bias[c]);
    alignas(64) float lanes[kTile];
#pragma GCC unroll 4
    for (int v = 0; v < kVectors; ++v) _mm512_store_ps(lanes + 16 * v, _mm512_add_ps(a[v], b));
    for (int v = 0; v < kTile; ++v) res[v * c_out + c] = lanes[v];
  }
}

struct Net {
  std::vector<Layer> hidden;
  std::vector<std::vector<float>> w32;     // packed fp32 hidden weights
  std::vector<std::vector<uint32_t>> w16;  // packed bf16 hidden weights
  const float* out_w;                      // [c_out, last hidden width] row-major
  const float* bias;                       // [c_out]
  int fan_in, c_out;
};

// The network from the caller's flat parameters (see nv_mlp_forward), hidden weights packed.
Net make_net(int n_layers, const int32_t* dims, const float* params, bool bf16) {
  Net net;
  net.fan_in = dims[0];
  const float* w = params;
  for (int l = 0; l < n_layers - 1; ++l) {
    const Layer L{dims[l], dims[l + 1], round_up(dims[l + 1], kBlock), w};
    net.hidden.push_back(L);
    if (bf16)
      net.w16.push_back(pack_bf16(L, l == 0 ? (L.fan_in + 1) / 2 : net.hidden[l - 1].out_pad / 2));
    else
      net.w32.push_back(pack_fp32(L));
    w += static_cast<int64_t>(dims[l]) * dims[l + 1];
  }
  net.c_out = dims[n_layers];
  net.out_w = w;
  net.bias = w + static_cast<int64_t>(dims[n_layers - 1]) * dims[n_layers];
  return net;
}

// One thread's buffers for forward_tiles.
struct TileScratch {
  std::vector<float> edge, res, ping, pong;
  explicit TileScratch(const Net& net) {
    int widest = round_up(net.fan_in, 2);
    for (const Layer& L : net.hidden) widest = L.out_pad > widest ? L.out_pad : widest;
    edge.resize(static_cast<size_t>(net.fan_in) * kTile);
    res.resize(static_cast<size_t>(kTile) * net.c_out);
    ping.resize(static_cast<size_t>(widest) * kTile);
    pong.resize(static_cast<size_t>(widest) * kTile);
  }
};

// Tiles [t0, t1) of the batch through every layer; out is [k, c_out] row-major.
void forward_tiles(const Net& net, const float* feats, int64_t k, int64_t stride, bool bf16, float* out,
                   int64_t t0, int64_t t1, TileScratch& scratch) {
  const int n_hidden = static_cast<int>(net.hidden.size());
  const int fan_in = net.fan_in, c_out = net.c_out;
  std::vector<float>& edge = scratch.edge;
  std::vector<float>& res = scratch.res;
  std::vector<float>& ping = scratch.ping;
  std::vector<float>& pong = scratch.pong;
  for (int64_t t = t0; t < t1; ++t) {
    const int64_t k0 = t * kTile;
    const int valid = static_cast<int>(k - k0 < kTile ? k - k0 : kTile);
    const float* in = feats + k0;
    int64_t ld = stride;
    if (valid < kTile) {  // the last, partial tile: a zero-padded copy
      std::fill(edge.begin(), edge.end(), 0.0f);
      for (int i = 0; i < fan_in; ++i)
        std::memcpy(edge.data() + i * kTile, feats + i * stride + k0, valid * sizeof(float));
      in = edge.data();
      ld = kTile;
    }
    const float* last = in;  // the last hidden layer's fp32 activations (a linear model: the input)
    if (n_hidden > 0 && !bf16) {
      for (int l = 0; l < n_hidden; ++l) {
        float* y = (l % 2 == 0) ? ping.data() : pong.data();
        hidden_fp32(in, ld, net.hidden[l].fan_in, net.w32[l].data(), net.hidden[l].out_pad, y);
        in = last = y;
        ld = kTile;
      }
    } else if (n_hidden > 0) {
      uint32_t* src = reinterpret_cast<uint32_t*>(ping.data());
      uint32_t* dst = reinterpret_cast<uint32_t*>(pong.data());
      to_pairs(in, ld, fan_in, src);
      int pairs = (fan_in + 1) / 2;
      for (int l = 0; l < n_hidden; ++l) {
        const bool final_layer = l == n_hidden - 1;
        float* dst_fp32 = final_layer ? reinterpret_cast<float*>(dst) : nullptr;
        hidden_bf16(src, pairs, net.w16[l].data(), net.hidden[l].out_pad, dst, dst_fp32);
        pairs = net.hidden[l].out_pad / 2;
        last = dst_fp32;
        std::swap(src, dst);
      }
      ld = kTile;
    }
    output_fp32(last, ld, n_hidden == 0 ? fan_in : net.hidden.back().fan_out, net.out_w, c_out, net.bias,
                res.data());
    std::memcpy(out + k0 * c_out, res.data(), static_cast<size_t>(valid) * c_out * sizeof(float));
  }
}

// nv_grid_mlp_forward's output rows r0..r1-1, r = j * nz + k (row j of plane k: a thread
// runs through the planes of one row before the next, so the lattice planes that row reads
// stay in its cache): z blends compiled for AVX-512 here (the same bits as any width: no
// fused multiply-add), then the MLP.
void grid_rows_forward(const Net& net, int n_levels, int n_features, const int64_t* planes, const int64_t* rz,
                       const int64_t* wz, int taps, int64_t nz, int64_t ny, int64_t nx, bool bf16, float* out,
                       int64_t r0, int64_t r1) {
  TileScratch scratch(net);
  std::vector<float> feats(static_cast<size_t>(n_features) * n_levels * nx);
  const int64_t tiles = (nx + kTile - 1) / kTile;
  for (int64_t r = r0; r < r1; ++r) {
    const int64_t j = r / nz, k = r % nz;
    for (int l = 0; l < n_levels; ++l) {
      const float* level = reinterpret_cast<const float*>(planes[l]);
      const int64_t nzl = planes[n_levels + l];
      for (int f = 0; f < n_features; ++f)
        nv::z_blend_row(nv::blend_rows, feats.data() + (static_cast<int64_t>(f) * n_levels + l) * nx,
                        level + f * nzl * ny * nx, ny, nx, reinterpret_cast<const int64_t*>(rz[l]),
                        reinterpret_cast<const float*>(wz[l]), taps, nz, k, j);
    }
    forward_tiles(net, feats.data(), nx, nx, bf16, out + (k * ny + j) * nx * net.c_out, 0, tiles, scratch);
  }
}

#pragma GCC pop_options

}  // namespace

extern "C" {

// 2: AVX-512 with BF16 (fp32 and bf16 kernels), 1: AVX-512 (fp32 only), 0: neither (the
// caller keeps torch's GEMMs). The CPU is asked at run time: the library is built without
// -march flags so one cache serves every node of a cluster.
int nv_mlp_isa() {
  __builtin_cpu_init();
  if (!(__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl")))
    return 0;
  return __builtin_cpu_supports("avx512bf16") ? 2 : 1;
}

// feats: [dims[0], k] with row stride `stride` (feature-major, as the encodings write it).
// dims: n_layers + 1 sizes, input first, outputs last; params: every layer's [out, in]
// weights row-major in order, then the output bias. out: [k, outputs] row-major.
// Returns 0, or -1 when this CPU lacks the instructions asked for (nothing written).
int nv_mlp_forward(const float* feats, int64_t k, int64_t stride, int n_layers, const int32_t* dims,
                   const float* params, int bf16, float* out, int n_threads) {
  if (nv_mlp_isa() < (bf16 ? 2 : 1) || n_layers < 1) return -1;
  const Net net = make_net(n_layers, dims, params, bf16 != 0);
  const int64_t tiles = (k + kTile - 1) / kTile;
  nv::parallel_ranges(tiles, n_threads, [&](int64_t t0, int64_t t1) {
    TileScratch scratch(net);
    forward_tiles(net, feats, k, stride, bf16 != 0, out, t0, t1, scratch);
  });
  return 0;
}

// The fused regular-grid decode: a grid encoding's levels as y-blended lattice planes
// (nv_grid_level_planes: level l's at address planes[l], [F][nzl][ny][nx] with nzl =
// planes[L + l]; its output planes' first lattice plane at address rz[l] and z weights at
// wz[l], as nv_grid_level takes them) -> the MLP's outputs on the nz x ny x nx grid,
// out [nz * ny * nx, c_out] row-major.
//
// Each output row's features ([F * L][nx], feature-major, row f * L + l) are z-blended into
// a buffer that stays in L1/L2 and go through the MLP at once, instead of being written to
// memory as [F * L, K] and read back: the same operations in the same order, so the same
// bits as nv_grid_level + nv_mlp_forward. Threads split the output rows (see
// grid_rows_forward), so a block of one row or one plane still uses them all.
int nv_grid_mlp_forward(int n_levels, int n_features, const int64_t* planes, const int64_t* rz, const int64_t* wz,
                        int taps, int64_t nz, int64_t ny, int64_t nx, int n_layers, const int32_t* dims,
                        const float* params, int bf16, float* out, int n_threads) {
  if (nv_mlp_isa() < (bf16 ? 2 : 1) || n_layers < 1 || dims[0] != n_features * n_levels) return -1;
  const Net net = make_net(n_layers, dims, params, bf16 != 0);
  nv::parallel_ranges(ny * nz, n_threads, [&](int64_t r0, int64_t r1) {
    grid_rows_forward(net, n_levels, n_features, planes, rz, wz, taps, nz, ny, nx, bf16 != 0, out, r0, r1);
  });
  return 0;
}

}  // extern "C"
