// The seed's attention core for one input feature (C = 1), as a PyTorch C++ extension.
//
// Built at install time by setup.py (torch.utils.cpp_extension) into
// tsformer._keras_attention; tsformer/models/keras_attention.py wraps it in an autograd
// Function and falls back to its pure-PyTorch "chunked" path when the module is missing.
//
// With one feature each score row is a_i x_j, so the row maximum is known in closed form
// (a_i max x or a_i min x): forward is one pass of T^2 exponentials per (batch, head), backward
// one more, and no T x T tensor ever exists.  The gradient of a comes from moments summed in
// forward.  Attention dropout is counter-based (see dropout_keep_mask in keras_attention.py):
// group g of 4 elements of score row `row` takes SplitMix64(seed + (row * G + g) * golden),
// element j uses its 16-bit lane j % 4 and is dropped when that lane is below `thr`.
//
// Speed without -march=native: the hot loops are compiled three times (x86-64 baseline, AVX2 +
// FMA, AVX-512) through target attributes, and the widest one the CPU supports (cpuid) is
// chosen on first use.  Other architectures get one build for their baseline.
//
// Headers: the few this file uses rather than <torch/extension.h> (all of libtorch's C++ API),
// which doubles the compile time of the install (61 s vs 29 s on the 2-core dev machine).
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <c10/util/StringUtil.h>
#include <torch/csrc/utils/pybind.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#if defined(__GNUC__) || defined(__clang__)
#define TSF_INLINE inline __attribute__((always_inline))
#else
#define TSF_INLINE __forceinline
#endif

#if (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__i386__))
#define TSF_X86_DISPATCH 1
#define TSF_TARGET_AVX2 __attribute__((target("avx2,fma,f16c,bmi,bmi2,popcnt")))
#define TSF_TARGET_AVX512 \
  __attribute__((target("avx512f,avx512vl,avx512bw,avx512dq,avx2,fma,f16c,bmi,bmi2,popcnt")))
#else
#define TSF_X86_DISPATCH 0
#endif

#if defined(_OPENMP)
#define TSF_SIMD _Pragma("omp simd")
#define TSF_STR(...) #__VA_ARGS__
#define TSF_SIMD_REDUCE(...) _Pragma(TSF_STR(omp simd reduction(+ : __VA_ARGS__)))
#else
#define TSF_SIMD
#define TSF_SIMD_REDUCE(...)
#endif

namespace {

constexpr uint64_t kGolden = 0x9E3779B97F4A7C15ULL;

TSF_INLINE uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

// exp for arguments <= ~0 (scores minus the row maximum); Cephes polynomial, ~1 ulp.
// kRint: round with rint (one vector instruction from SSE4.1 / NEON on).  Without it
// (x86-64's SSE2 baseline, where rint does not vectorise) the same round-to-nearest-even comes
// from adding and subtracting 1.5 * 2**23 (exact for |v| < 2**22; no FMA to fuse it there).
template <bool kRint>
TSF_INLINE float exp_neg(float x) {
  x = x < -87.0f ? -87.0f : x;
  const float v = x * 1.44269504088896341f;
  const float n = kRint ? std::rint(v) : (v + 12582912.0f) - 12582912.0f;
  float r = x - n * 0.693359375f;
  r = r + n * 2.12194440e-4f;
  float q = 1.9875691500e-4f;
  q = q * r + 1.3981999507e-3f;
  q = q * r + 8.3334519073e-3f;
  q = q * r + 4.1665795894e-2f;
  q = q * r + 1.6666665459e-1f;
  q = q * r + 5.0000001201e-1f;
  const float y = q * r * r + r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  float s;
  std::memcpy(&s, &bits, 4);
  return y * s;
}

struct Job {
  const float *a = nullptr, *x = nullptr, *g = nullptr, *gr = nullptr;
  const float *o_s = nullptr, *r_s = nullptr, *z_s = nullptr, *ex_s = nullptr,
              *edx2_s = nullptr;
  float *o = nullptr, *r = nullptr, *z = nullptr, *ex = nullptr, *edx2 = nullptr;
  float *da = nullptr, *dx = nullptr;
  int64_t H = 0, T = 0;
  uint64_t seed = 0;
  uint16_t thr = 0;        // drop when the 16-bit lane < thr; 0 = no dropout
  float keep_scale = 1.f;  // 1 / (1 - p)
};

// Per-thread scratch.  Rows are padded to a multiple of 32 so every loop runs full vectors (a
// scalar tail of up to 31 elements costs ~30% at T = 500); the padded x repeats x[0] so
// exponents stay <= 0, and pads get weight 0.
struct Scratch {
  int64_t Tp;
  std::unique_ptr<float[]> mem;
  float *xp, *w, *k, *acc;
  uint64_t* hb;

  explicit Scratch(int64_t T) : Tp((T + 31) / 32 * 32) {
    // five 64-byte-aligned rows of Tp floats (hb: Tp / 4 uint64 = Tp * 2 bytes, fits)
    const int64_t row = Tp + 16;
    mem.reset(new float[static_cast<size_t>(row * 5 + 16)]);
    auto base = reinterpret_cast<uintptr_t>(mem.get());
    float* p = reinterpret_cast<float*>((base + 63) & ~static_cast<uintptr_t>(63));
    xp = p;
    w = p + row;
    k = p + 2 * row;
    acc = p + 3 * row;
    hb = reinterpret_cast<uint64_t*>(p + 4 * row);
    for (int64_t j = 0; j < Tp; ++j) w[j] = j < T ? 1.0f : 0.0f;
  }
};

// x row of one batch element into the padded buffer; returns min and max
TSF_INLINE void load_x(Scratch& s, const float* xb, int64_t T, float* mn, float* mx) {
  float lo = xb[0], hi = xb[0];
  for (int64_t j = 0; j < T; ++j) {
    s.xp[j] = xb[j];
    lo = xb[j] < lo ? xb[j] : lo;
    hi = xb[j] > hi ? xb[j] : hi;
  }
  for (int64_t j = T; j < s.Tp; ++j) s.xp[j] = xb[0];
  *mn = lo;
  *mx = hi;
}

// keep mask of one score row as floats {0, 1} (times the pad weight)
TSF_INLINE void row_keep(Scratch& s, int64_t T, uint64_t seed, int64_t row, uint16_t thr) {
  const int64_t G = (T + 3) / 4, Gp = s.Tp / 4;
  uint64_t* __restrict hb = s.hb;
  const uint64_t base = seed + static_cast<uint64_t>(row * G) * kGolden;
  TSF_SIMD
  for (int64_t g = 0; g < Gp; ++g) hb[g] = mix64(base + static_cast<uint64_t>(g) * kGolden);
  const uint16_t* __restrict h16 = reinterpret_cast<const uint16_t*>(hb);  // little-endian lanes
  float* __restrict k = s.k;
  const float* __restrict w = s.w;
  TSF_SIMD
  for (int64_t j = 0; j < s.Tp; ++j) k[j] = h16[j] >= thr ? w[j] : 0.0f;
}

template <bool kRint>
TSF_INLINE void fwd_body(const Job& jb, Scratch& s, int64_t bh) {
  const int64_t T = jb.T, Tp = s.Tp;
  const uint16_t thr = jb.thr;
  const float* __restrict xp = s.xp;
  const float* __restrict w = s.w;
  const float* __restrict k = s.k;
  float xmin, xmax;
  load_x(s, jb.x + (bh / jb.H) * T, T, &xmin, &xmax);
  for (int64_t i = 0; i < T; ++i) {
    const int64_t row = bh * T + i;
    const float ai = jb.a[row];
    const float m = ai >= 0.0f ? ai * xmax : ai * xmin;
    float z = 0.f, s1 = 0.f, sd0 = 0.f, sd1 = 0.f, sd2 = 0.f;
    if (thr) {
      row_keep(s, T, jb.seed, row, thr);
      TSF_SIMD_REDUCE(z, s1, sd0, sd1, sd2)
      for (int64_t j = 0; j < Tp; ++j) {
        const float xj = xp[j];
        const float e = exp_neg<kRint>(ai * xj - m) * w[j];
        const float ke = e * k[j];
        const float kex = ke * xj;
        z += e;
        s1 += e * xj;
        sd0 += ke;
        sd1 += kex;
        sd2 += kex * xj;
      }
      const float iz = 1.0f / z;
      jb.o[row] = sd1 * jb.keep_scale * iz;
      jb.r[row] = sd0 * jb.keep_scale * iz;
      jb.ex[row] = s1 * iz;
      jb.edx2[row] = sd2 * jb.keep_scale * iz;
    } else {
      TSF_SIMD_REDUCE(z, s1, sd2)
      for (int64_t j = 0; j < Tp; ++j) {
        const float xj = xp[j];
        const float e = exp_neg<kRint>(ai * xj - m) * w[j];
        const float ex = e * xj;
        z += e;
        s1 += ex;
        sd2 += ex * xj;
      }
      const float iz = 1.0f / z;
      jb.o[row] = s1 * iz;
      jb.r[row] = 1.0f;
      jb.ex[row] = s1 * iz;
      jb.edx2[row] = sd2 * iz;
    }
    jb.z[row] = z;
  }
}

template <bool kRint>
TSF_INLINE void bwd_body(const Job& jb, Scratch& s, int64_t bh) {
  const int64_t T = jb.T, Tp = s.Tp;
  const uint16_t thr = jb.thr;
  const float* __restrict xp = s.xp;
  const float* __restrict k = s.k;
  float* __restrict acc = s.acc;
  float xmin, xmax;
  load_x(s, jb.x + (bh / jb.H) * T, T, &xmin, &xmax);
  for (int64_t j = 0; j < Tp; ++j) acc[j] = 0.f;
  for (int64_t i = 0; i < T; ++i) {
    const int64_t row = bh * T + i;
    const float ai = jb.a[row], gi = jb.g[row], qi = jb.gr[row];
    const float oi = jb.o_s[row], ri = jb.r_s[row];
    const float iz = 1.0f / jb.z_s[row];
    const float m = ai >= 0.0f ? ai * xmax : ai * xmin;
    // values (x_j, 1), output grads (g_i, q_i); D_i = g_i o_i + q_i r_i
    const float Di = gi * oi + qi * ri;
    // dL/da_i = g_i E[d x^2] + q_i o_i - D_i E[x]
    jb.da[row] = gi * jb.edx2_s[row] + qi * oi - Di * jb.ex_s[row];
    // dL/dx_j += p_ij (d_ij (g_i + a_i q_i + a_i g_i x_j) - a_i D_i)
    const float alpha = (gi + ai * qi) * jb.keep_scale * iz;
    const float beta = ai * gi * jb.keep_scale * iz;
    const float gamma = ai * Di * iz;
    if (thr) {
      row_keep(s, T, jb.seed, row, thr);
      TSF_SIMD
      for (int64_t j = 0; j < Tp; ++j) {
        const float xj = xp[j];
        const float e = exp_neg<kRint>(ai * xj - m);
        acc[j] += e * (k[j] * (alpha + beta * xj) - gamma);
      }
    } else {
      TSF_SIMD
      for (int64_t j = 0; j < Tp; ++j) {
        const float xj = xp[j];
        const float e = exp_neg<kRint>(ai * xj - m);
        acc[j] += e * (alpha - gamma + beta * xj);
      }
    }
  }
  float* dx = jb.dx + bh * T;
  for (int64_t j = 0; j < T; ++j) dx[j] = acc[j];
}

using RowFn = void (*)(const Job&, Scratch&, int64_t);

// rint vectorises everywhere but on x86-64's SSE2 baseline
constexpr bool kBaseRint = !TSF_X86_DISPATCH;
void fwd_base(const Job& jb, Scratch& s, int64_t bh) { fwd_body<kBaseRint>(jb, s, bh); }
void bwd_base(const Job& jb, Scratch& s, int64_t bh) { bwd_body<kBaseRint>(jb, s, bh); }
#if TSF_X86_DISPATCH
TSF_TARGET_AVX2 void fwd_avx2(const Job& jb, Scratch& s, int64_t bh) {
  fwd_body<true>(jb, s, bh);
}
TSF_TARGET_AVX2 void bwd_avx2(const Job& jb, Scratch& s, int64_t bh) {
  bwd_body<true>(jb, s, bh);
}
TSF_TARGET_AVX512 void fwd_avx512(const Job& jb, Scratch& s, int64_t bh) {
  fwd_body<true>(jb, s, bh);
}
TSF_TARGET_AVX512 void bwd_avx512(const Job& jb, Scratch& s, int64_t bh) {
  bwd_body<true>(jb, s, bh);
}
#endif

struct Variant {
  const char* name;
  RowFn fwd, bwd;
};

Variant variant_named(const std::string& name) {
#if TSF_X86_DISPATCH
  if (name == "avx512") return {"avx512", fwd_avx512, bwd_avx512};
  if (name == "avx2") return {"avx2", fwd_avx2, bwd_avx2};
#endif
  return {"baseline", fwd_base, bwd_base};
}

std::vector<std::string> supported_isas() {
  std::vector<std::string> out;
#if TSF_X86_DISPATCH
  __builtin_cpu_init();
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                    __builtin_cpu_supports("bmi2") && __builtin_cpu_supports("popcnt");
  if (avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
      __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq"))
    out.push_back("avx512");
  if (avx2) out.push_back("avx2");
#endif
  out.push_back("baseline");
  return out;
}

Variant& current() {
  static Variant v = variant_named(supported_isas().front());
  return v;
}

// One task per thread of PyTorch's intra-op pool (torch.get_num_threads()), each with its own
// scratch, taking (batch, head) pairs from a shared counter: dynamic scheduling, so a thread
// that the OS deschedules on a busy machine does not hold the others up.  Running in
// PyTorch's pool matters: a separate pool fights PyTorch's spinning OpenMP workers for the
// cores (3-4x slower measured).
void run(const Job& jb, int64_t n_bh, RowFn fn) {
  const int64_t n_workers =
      std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), n_bh));
  std::atomic<int64_t> next{0};
  at::parallel_for(0, n_workers, 1, [&](int64_t, int64_t) {
    Scratch s(jb.T);
    for (int64_t bh = next.fetch_add(1); bh < n_bh; bh = next.fetch_add(1)) fn(jb, s, bh);
  });
}

void check(const at::Tensor& t, const char* name, int64_t dim) {
  TORCH_CHECK(t.device().is_cpu(), name, " must be a CPU tensor");
  TORCH_CHECK(t.scalar_type() == at::kFloat, name, " must be float32, got ", t.scalar_type());
  TORCH_CHECK(t.is_contiguous(), name, " must be contiguous");
  TORCH_CHECK(t.dim() == dim, name, " must have ", dim, " dimensions, got ", t.dim());
}

uint16_t check_thr(int64_t thr) {
  TORCH_CHECK(thr >= 0 && thr < 65536, "thr must be in [0, 65536), got ", thr);
  return static_cast<uint16_t>(thr);
}

// a (B, H, T) scaled query factors, x (B, T) the input feature.  Returns o, r (the outputs:
// o_i = sum_j p_ij d_ij x_j and the kept row sum r_i) and z, E[x], E[d x^2] (for backward).
std::vector<at::Tensor> forward(const at::Tensor& a, const at::Tensor& x, uint64_t seed,
                                int64_t thr, double keep_scale) {
  check(a, "a", 3);
  check(x, "x", 2);
  const int64_t B = a.size(0), H = a.size(1), T = a.size(2);
  TORCH_CHECK(x.size(0) == B && x.size(1) == T, "x must be (", B, ", ", T, "), got ",
              x.sizes());
  std::vector<at::Tensor> out;
  for (int i = 0; i < 5; ++i) out.push_back(at::empty_like(a));
  if (a.numel() == 0) return out;
  Job jb;
  jb.a = a.data_ptr<float>();
  jb.x = x.data_ptr<float>();
  jb.H = H;
  jb.T = T;
  jb.seed = seed;
  jb.thr = check_thr(thr);
  jb.keep_scale = static_cast<float>(keep_scale);
  jb.o = out[0].data_ptr<float>();
  jb.r = out[1].data_ptr<float>();
  jb.z = out[2].data_ptr<float>();
  jb.ex = out[3].data_ptr<float>();
  jb.edx2 = out[4].data_ptr<float>();
  run(jb, B * H, current().fwd);
  return out;
}

// Gradients of a and of x per head: da (B, H, T), dx (B, H, T) (the caller sums over heads).
std::vector<at::Tensor> backward(const at::Tensor& a, const at::Tensor& x, const at::Tensor& go,
                                 const at::Tensor& gr, const at::Tensor& o, const at::Tensor& r,
                                 const at::Tensor& z, const at::Tensor& ex,
                                 const at::Tensor& edx2, uint64_t seed, int64_t thr,
                                 double keep_scale) {
  check(a, "a", 3);
  check(x, "x", 2);
  const int64_t B = a.size(0), H = a.size(1), T = a.size(2);
  TORCH_CHECK(x.size(0) == B && x.size(1) == T, "x must be (", B, ", ", T, "), got ",
              x.sizes());
  const std::pair<const at::Tensor*, const char*> same[] = {
      {&go, "go"}, {&gr, "gr"}, {&o, "o"}, {&r, "r"}, {&z, "z"}, {&ex, "ex"}, {&edx2, "edx2"}};
  for (const auto& [t, name] : same) {
    check(*t, name, 3);
    TORCH_CHECK(t->sizes() == a.sizes(), name, " must have the shape of a ", a.sizes(),
                ", got ", t->sizes());
  }
  at::Tensor da = at::empty_like(a), dx = at::empty_like(a);
  if (a.numel() == 0) return {da, dx};
  Job jb;
  jb.a = a.data_ptr<float>();
  jb.x = x.data_ptr<float>();
  jb.g = go.data_ptr<float>();
  jb.gr = gr.data_ptr<float>();
  jb.o_s = o.data_ptr<float>();
  jb.r_s = r.data_ptr<float>();
  jb.z_s = z.data_ptr<float>();
  jb.ex_s = ex.data_ptr<float>();
  jb.edx2_s = edx2.data_ptr<float>();
  jb.H = H;
  jb.T = T;
  jb.seed = seed;
  jb.thr = check_thr(thr);
  jb.keep_scale = static_cast<float>(keep_scale);
  jb.da = da.data_ptr<float>();
  jb.dx = dx.data_ptr<float>();
  run(jb, B * H, current().bwd);
  return {da, dx};
}

// The keep mask of rows [row0, row0 + n) of length T as uint8 (n, T): what the kernels use,
// for tests against the PyTorch mask.
at::Tensor keep_mask(uint64_t seed, int64_t row0, int64_t n, int64_t T, int64_t thr) {
  TORCH_CHECK(n >= 0 && T > 0 && row0 >= 0, "bad mask shape");
  at::Tensor out = at::empty({n, T}, at::kByte);
  Scratch s(T);
  uint8_t* p = out.data_ptr<uint8_t>();
  for (int64_t i = 0; i < n; ++i) {
    row_keep(s, T, seed, row0 + i, check_thr(thr));
    for (int64_t j = 0; j < T; ++j) p[i * T + j] = s.k[j] != 0.0f;
  }
  return out;
}

std::string isa() { return current().name; }

void set_isa(const std::string& name) {
  const auto ok = supported_isas();
  TORCH_CHECK(std::find(ok.begin(), ok.end(), name) != ok.end(), "isa ", name,
              " is not supported here; supported: ", c10::Join(", ", ok));
  current() = variant_named(name);
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "C = 1 attention core of tsformer's seed model (see keras_attention.py)";
  m.def("forward", &forward, "attention core forward: (o, r, z, ex, edx2)", py::arg("a"),
        py::arg("x"), py::arg("seed"), py::arg("thr"), py::arg("keep_scale"));
  m.def("backward", &backward, "attention core backward: (da, dx per head)", py::arg("a"),
        py::arg("x"), py::arg("go"), py::arg("gr"), py::arg("o"), py::arg("r"), py::arg("z"),
        py::arg("ex"), py::arg("edx2"), py::arg("seed"), py::arg("thr"),
        py::arg("keep_scale"));
  m.def("keep_mask", &keep_mask, "keep mask rows as the kernels compute them", py::arg("seed"),
        py::arg("row0"), py::arg("n"), py::arg("t"), py::arg("thr"));
  m.def("isa", &isa, "the SIMD variant in use: avx512, avx2 or baseline");
  m.def("supported_isas", &supported_isas, "the variants this CPU runs, widest first");
  m.def("set_isa", &set_isa, "use another supported variant (tests, benchmarks)");
}
