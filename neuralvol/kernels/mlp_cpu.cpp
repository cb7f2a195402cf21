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
//
// AMX (nv_mlp_isa() == 3): on a Xeon with AMX-BF16 the bf16 hidden layers run on tiles
// instead (amx_layer), the weights as A tiles and the tile's bf16 pairs, in the layout above,
// as B tiles; ReLU and the casts stay on AVX-512 between layers. On this session's 2-core
// Xeon, 32 -> 64 -> 64 -> 1 on 2^18 voxels: AVX512-BF16 19.3 ms (84 GMAC/s: slower than its
// fp32, 12.3 ms), AMX 3.9 ms (414 GMAC/s). TDPBF16PS adds each pair's products in fp32 as
// vdpbf16ps does, though in another order within the pair and with denormals flushed: the
// two bf16 paths agree to float32 rounding, not bit for bit.
#include <cpuid.h>
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>

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

// bf16 weights as AMX A tiles: [out_pad][pairs] uint32 row-major, W[j][2p] in the low half,
// out_pad a multiple of 16 neurons (a tile's rows) and pairs of 16 (a tile row's 64 bytes:
// 32 inputs); padding is zero.
struct AmxLayer {
  int out_pad, pairs;
  std::vector<uint32_t> w;
};

AmxLayer pack_amx(const Layer& L, int in_pairs) {
  AmxLayer a{round_up(L.fan_out, 16), round_up(in_pairs, 16), {}};
  a.w.assign(static_cast<size_t>(a.out_pad) * a.pairs, 0u);
  for (int j = 0; j < L.fan_out; ++j)
    for (int i = 0; i < L.fan_in; ++i)
      a.w[static_cast<size_t>(j) * a.pairs + i / 2] |= bf16_bits(L.w[j * L.fan_in + i]) << (16 * (i % 2));
  return a;
}

// The arithmetics a Net is packed for: the caller's `arithmetic` 0 is kFp32, 1 the fastest bf16
// this CPU has (AMX where usable), 2 bf16 through AVX512-BF16 only (benchmarks time both).
enum Arithmetic { kFp32, kBf16Avx512, kBf16Amx };

#if defined(__linux__) && defined(__x86_64__) && \
    (defined(__clang__) ? __clang_major__ >= 12 : (defined(__GNUC__) && __GNUC__ >= 11))
#define NV_HAVE_AMX 1
#endif

// Whether this CPU has AMX-BF16 and this process may use it: CPUID's AMX-TILE and AMX-BF16,
// the OS saving the tile state (XCR0 bits 17-18), and Linux granting the 8 KiB of tile data
// per thread, which it does only when asked (arch_prctl ARCH_REQ_XCOMP_PERM, XTILEDATA).
// Asked once per process; oneDNN asks the same for torch's own AMX GEMMs.
bool amx_ready() {
#ifdef NV_HAVE_AMX
  static const bool ready = [] {
    unsigned a, b, c, d;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d) || !(d & (1u << 22)) || !(d & (1u << 24))) return false;
    if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & (1u << 27))) return false;  // OSXSAVE: xgetbv works
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    if ((lo & (3u << 17)) != (3u << 17)) return false;
    constexpr long kReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;
    return syscall(SYS_arch_prctl, kReqXcompPerm, kXfeatureXtiledata) == 0;
  }();
  return ready;
#else
  return false;
#endif
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

#pragma GCC pop_options

#ifdef NV_HAVE_AMX
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512bf16,amx-tile,amx-bf16")

// Every tile 16 rows x 64 bytes: 0-3 accumulators (fp32 [16 neurons][16 voxels]), 4-5 weights
// (A: [16 neurons][16 input pairs]), 6-7 inputs (B: [16 input pairs][16 voxels], the layout
// to_pairs writes). Each thread configures its tiles before its first tile op and releases
// them after its last (TileScratch), so a thread holds the tile state only inside a call.
// The configuration is a constant in memory: GCC 12 dropped the stores of rows and colsb into a
// local one before ldtilecfg (it saw no reader), leaving every tile unconfigured (#UD on use).
struct alignas(64) TileConfig {
  uint8_t palette, start_row, reserved[14];
  uint16_t colsb[16];
  uint8_t rows[16];
};
constexpr TileConfig kTileConfig{1, 0, {}, {64, 64, 64, 64, 64, 64, 64, 64}, {16, 16, 16, 16, 16, 16, 16, 16}};

void amx_configure() { _tile_loadconfig(&kTileConfig); }

void amx_release() { _tile_release(); }

// One hidden layer of one 32-voxel tile: bf16 pairs in [layer.pairs][kTile] (rows past the
// input zero) -> fp32 sums [layer.out_pad][kTile], before the ReLU. Two neuron blocks x two
// voxel blocks per pass: 4 accumulators, each weight tile used twice and each input tile twice.
// Each tdpbf16ps adds the products of its 16 pairs in a fixed order, so the bits do not depend
// on the tiling or the thread count.
void amx_layer(const uint32_t* in, const AmxLayer& layer, float* sums) {
  const int blocks = layer.out_pad / 16, steps = layer.pairs / 16;
  const int w_stride = layer.pairs * 4, io_stride = kTile * 4;
  for (int nb = 0; nb < blocks; nb += 2) {
    const bool two = nb + 1 < blocks;
    const uint32_t* w0 = layer.w.data() + static_cast<size_t>(nb) * 16 * layer.pairs;
    const uint32_t* w1 = w0 + 16 * layer.pairs;
    _tile_zero(0);
    _tile_zero(1);
    if (two) {
      _tile_zero(2);
      _tile_zero(3);
    }
    for (int st = 0; st < steps; ++st) {
      _tile_loadd(6, in + st * 16 * kTile, io_stride);
      _tile_loadd(7, in + st * 16 * kTile + 16, io_stride);
      _tile_loadd(4, w0 + st * 16, w_stride);
      _tile_dpbf16ps(0, 4, 6);
      _tile_dpbf16ps(1, 4, 7);
      if (two) {
        _tile_loadd(5, w1 + st * 16, w_stride);
        _tile_dpbf16ps(2, 5, 6);
        _tile_dpbf16ps(3, 5, 7);
      }
    }
    float* c = sums + nb * 16 * kTile;
    _tile_stored(0, c, io_stride);
    _tile_stored(1, c + 16, io_stride);
    if (two) {
      _tile_stored(2, c + 16 * kTile, io_stride);
      _tile_stored(3, c + 16 * kTile + 16, io_stride);
    }
  }
}

#pragma GCC pop_options
#else
void amx_configure() {}
void amx_release() {}
void amx_layer(const uint32_t*, const AmxLayer&, float*) {}
#endif

#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512bf16")

struct Net {
  std::vector<Layer> hidden;
  std::vector<std::vector<float>> w32;     // packed fp32 hidden weights
  std::vector<std::vector<uint32_t>> w16;  // packed bf16 hidden weights (AVX512-BF16)
  std::vector<AmxLayer> amx;               // the same as AMX A tiles (bf16 on AMX)
  const float* out_w;                      // [c_out, last hidden width] row-major
  const float* bias;                       // [c_out]
  int fan_in, c_out;
  Arithmetic arithmetic;
};

// The network from the caller's flat parameters (see nv_mlp_forward), hidden weights packed
// for the arithmetic asked for (kFp32, kBf16Avx512 or kBf16Amx).
Net make_net(int n_layers, const int32_t* dims, const float* params, Arithmetic arithmetic) {
  const bool bf16 = arithmetic != kFp32;
  Net net;
  net.fan_in = dims[0];
  net.arithmetic = arithmetic;
  const float* w = params;
  for (int l = 0; l < n_layers - 1; ++l) {
    const Layer L{dims[l], dims[l + 1], round_up(dims[l + 1], kBlock), w};
    net.hidden.push_back(L);
    if (arithmetic == kBf16Amx)
      net.amx.push_back(pack_amx(L, l == 0 ? round_up(L.fan_in, 2) / 2 : net.amx[l - 1].out_pad / 2));
    else if (bf16)
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

// One thread's buffers for forward_tiles; on AMX it also holds the thread's tile configuration.
struct TileScratch {
  std::vector<float> edge, res, ping, pong;
  bool amx;
  explicit TileScratch(const Net& net) : amx(net.arithmetic == kBf16Amx && !net.hidden.empty()) {
    int widest = round_up(net.fan_in, 2);
    for (const Layer& L : net.hidden) widest = L.out_pad > widest ? L.out_pad : widest;
    for (const AmxLayer& A : net.amx) {  // AMX: [out_pad] fp32 sums, [pairs] zero-padded bf16 pairs
      widest = A.out_pad > widest ? A.out_pad : widest;
      widest = A.pairs > widest ? A.pairs : widest;
    }
    edge.resize(static_cast<size_t>(net.fan_in) * kTile);
    res.resize(static_cast<size_t>(kTile) * net.c_out);
    ping.assign(static_cast<size_t>(widest) * kTile, 0.0f);
    pong.assign(static_cast<size_t>(widest) * kTile, 0.0f);
    if (amx) amx_configure();
  }
  ~TileScratch() {
    if (amx) amx_release();
  }
  TileScratch(const TileScratch&) = delete;
  TileScratch& operator=(const TileScratch&) = delete;
};

// fp32 sums [rows][kTile] -> ReLU -> bf16 pairs [rows / 2][kTile], then zero pair rows up to
// `pad_to` (the next layer's K padding, which its zero weights multiply: zeros keep a stale
// Inf or NaN out of the sums).
void relu_to_pairs(const float* sums, int rows, uint32_t* out, int pad_to) {
  const __m512 zero = _mm512_setzero_ps();
  for (int p = 0; p < rows / 2; ++p)
    for (int h = 0; h < kVectors; ++h)
      _mm512_storeu_si512(out + p * kTile + 16 * h,
                          pack_pairs(_mm512_max_ps(_mm512_loadu_ps(sums + 2 * p * kTile + 16 * h), zero),
                                     _mm512_max_ps(_mm512_loadu_ps(sums + (2 * p + 1) * kTile + 16 * h), zero)));
  std::memset(out + rows / 2 * kTile, 0, static_cast<size_t>(pad_to - rows / 2) * kTile * sizeof(uint32_t));
}

void relu_in_place(float* sums, int rows) {
  const __m512 zero = _mm512_setzero_ps();
  for (int i = 0; i < rows * kTile; i += 16) _mm512_storeu_ps(sums + i, _mm512_max_ps(_mm512_loadu_ps(sums + i), zero));
}

// Tiles [t0, t1) of the batch through every layer; out is [k, c_out] row-major.
void forward_tiles(const Net& net, const float* feats, int64_t k, int64_t stride, float* out,
                   int64_t t0, int64_t t1, TileScratch& scratch) {
  const bool bf16 = net.arithmetic != kFp32;
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
    if (n_hidden > 0 && scratch.amx) {
      uint32_t* pairs = reinterpret_cast<uint32_t*>(ping.data());
      float* sums = pong.data();
      to_pairs(in, ld, fan_in, pairs);
      const int written = (fan_in + 1) / 2;
      std::memset(pairs + written * kTile, 0, static_cast<size_t>(net.amx[0].pairs - written) * kTile * 4);
      for (int l = 0; l < n_hidden; ++l) {
        amx_layer(pairs, net.amx[l], sums);
        if (l + 1 < n_hidden)
          relu_to_pairs(sums, net.amx[l].out_pad, pairs, net.amx[l + 1].pairs);
        else
          relu_in_place(sums, net.hidden[l].fan_out);
      }
      last = sums;
      ld = kTile;
    } else if (n_hidden > 0 && !bf16) {
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
                       const int64_t* wz, int taps, int64_t nz, int64_t ny, int64_t nx, float* out,
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
    forward_tiles(net, feats.data(), nx, nx, out + (k * ny + j) * nx * net.c_out, 0, tiles, scratch);
  }
}

#pragma GCC pop_options

}  // namespace

extern "C" {

// 3: AMX-BF16 usable here as well (bf16 on AMX tiles), 2: AVX-512 with BF16 (fp32 and bf16
// kernels), 1: AVX-512 (fp32 only), 0: neither (the caller keeps torch's GEMMs). The CPU is
// asked at run time: the library is built without -march flags so one cache serves every node
// of a cluster.
int nv_mlp_isa() {
  __builtin_cpu_init();
  if (!(__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl")))
    return 0;
  if (!__builtin_cpu_supports("avx512bf16")) return 1;
  return amx_ready() ? 3 : 2;
}

}  // extern "C"

namespace {

// The caller's arithmetic (0 fp32, 1 the fastest bf16 here, 2 bf16 without AMX) as a Net's,
// or -1 when this CPU lacks the instructions.
int resolve(int arithmetic) {
  const int isa = nv_mlp_isa();
  if (arithmetic == 0) return isa >= 1 ? kFp32 : -1;
  if (arithmetic == 1 || arithmetic == 2) return isa < 2 ? -1 : (arithmetic == 1 && isa == 3 ? kBf16Amx : kBf16Avx512);
  return -1;
}

}  // namespace

extern "C" {

// feats: [dims[0], k] with row stride `stride` (feature-major, as the encodings write it).
// dims: n_layers + 1 sizes, input first, outputs last; params: every layer's [out, in]
// weights row-major in order, then the output bias. arithmetic: 0 fp32, 1 bf16 hidden layers
// on the fastest unit here (AMX, else AVX512-BF16), 2 bf16 on AVX512-BF16. out: [k, outputs]
// row-major. Returns 0, or -1 when this CPU lacks the instructions asked for (nothing written).
int nv_mlp_forward(const float* feats, int64_t k, int64_t stride, int n_layers, const int32_t* dims,
                   const float* params, int arithmetic, float* out, int n_threads) {
  const int a = resolve(arithmetic);
  if (a < 0 || n_layers < 1) return -1;
  const Net net = make_net(n_layers, dims, params, static_cast<Arithmetic>(a));
  const int64_t tiles = (k + kTile - 1) / kTile;
  nv::parallel_ranges(tiles, n_threads, [&](int64_t t0, int64_t t1) {
    TileScratch scratch(net);
    forward_tiles(net, feats, k, stride, out, t0, t1, scratch);
  });
  return 0;
}

// The fused regular-grid decode: a grid encoding's levels as y-blended lattice planes
// (nv_grid_level_planes: level l's at address planes[l], [F][nzl][ny][nx] with nzl =
// planes[L + l]; its output planes' first lattice plane at address rz[l] and z weights at
// wz[l], as nv_grid_level takes them) -> the MLP's outputs on the nz x ny x nx grid,
// out [nz * ny * nx, c_out] row-major; arithmetic as nv_mlp_forward's.
//
// Each output row's features ([F * L][nx], feature-major, row f * L + l) are z-blended into
// a buffer that stays in L1/L2 and go through the MLP at once, instead of being written to
// memory as [F * L, K] and read back: the same operations in the same order, so the same
// bits as nv_grid_level + nv_mlp_forward. Threads split the output rows (see
// grid_rows_forward), so a block of one row or one plane still uses them all.
int nv_grid_mlp_forward(int n_levels, int n_features, const int64_t* planes, const int64_t* rz, const int64_t* wz,
                        int taps, int64_t nz, int64_t ny, int64_t nx, int n_layers, const int32_t* dims,
                        const float* params, int arithmetic, float* out, int n_threads) {
  const int a = resolve(arithmetic);
  if (a < 0 || n_layers < 1 || dims[0] != n_features * n_levels) return -1;
  const Net net = make_net(n_layers, dims, params, static_cast<Arithmetic>(a));
  nv::parallel_ranges(ny * nz, n_threads, [&](int64_t r0, int64_t r1) {
    grid_rows_forward(net, n_levels, n_features, planes, rz, wz, taps, nz, ny, nx, out, r0, r1);
  });
  return 0;
}

}  // extern "C"
