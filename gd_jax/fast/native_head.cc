// A block of K steps of plain gradient descent for N sigmoid networks with the
// quadratic cost, on batches of B examples, with the first layer's weight updates held
// back (gd_jax/fast/delayed.py, "delayed first-layer updates"): from the block's x_s W_0
// and Gram matrix x_s x_rᵀ, each step's first-layer pre-activations, the step of the
// layers after the first, and the −η δ_s the first layer's update is made of. The
// native head of gd_jax/fast/native.py, which builds and loads it; gd_jax/fast/check.py
// checks it against the core before a run may take it.
//
// Layout, networks last: x_s W_0 [K, B, H, N], −η δ [K·B, H, N], b1 [H, N], each later
// layer W [I, J, N], b [J, N]. kLanes networks sit side by side in the lanes of one
// vector (GCC's vector extensions, one AVX-512 or AVX2 register), so every operation
// below is an elementwise one on whole vectors; the last group, if short, has zeros in
// its spare lanes, so every network takes the same instructions wherever it sits. Per
// network the arithmetic is that of jax.grad of the core's train.make_loss, in another
// order of the sums: equal up to float rounding, which is checked before use.
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <memory>
#include <thread>
#include <vector>

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

#if defined(__AVX512F__)
constexpr int kLanes = 16;
#elif defined(__AVX2__)
constexpr int kLanes = 8;
#else
constexpr int kLanes = 4;
#endif
typedef float Vec __attribute__((vector_size(kLanes * sizeof(float))));
typedef int32_t IVec __attribute__((vector_size(kLanes * sizeof(int32_t))));
typedef uint32_t UVec __attribute__((vector_size(kLanes * sizeof(uint32_t))));

// The first m lanes of a vector from memory, or to it: m is kLanes but in the last group
// of networks, whose lanes past m are zeros and never written back. So every network
// takes the same code, whatever its place among the others.
inline Vec Get(const float* p, int m) {
  Vec v{};
  if (m == kLanes) {
    std::memcpy(&v, p, sizeof v);
  } else {
    std::memcpy(&v, p, m * sizeof(float));
  }
  return v;
}

inline void Put(float* p, Vec v, int m) {
  if (m == kLanes) {
    std::memcpy(p, &v, sizeof v);
  } else {
    std::memcpy(p, &v, m * sizeof(float));
  }
}

// ⌊x⌋ (of a finite x in float32's int32 range), and 2ⁿ from an integral float n of the
// normal exponents' range.
inline Vec Floor(Vec x) {
  const Vec t = __builtin_convertvector(__builtin_convertvector(x, IVec), Vec);
  return t > x ? t - 1.0f : t;
}

inline Vec Pow2(Vec n) {
  const UVec bits = reinterpret_cast<UVec>(__builtin_convertvector(n, IVec) + 127) << 23;
  Vec out;
  std::memcpy(&out, &bits, sizeof out);
  return out;
}

// 1 / (1 + e⁻ᶻ), the exponential as model._exp32 computes it (Cephes expf). A NaN
// stays NaN (through r); n is taken from 0 there, to stay within Floor's range.
using V = Vec;

inline V Sigmoid(V z) {
  V x = -z;
  x = x < -87.3f ? V{} - 87.3f : x;
  x = x > 88.3f ? V{} + 88.3f : x;
  const V finite = x == x ? x : V{};
  const V n = Floor(finite * 1.44269504088896341f + 0.5f);
  const V r = x - n * 0.693359375f - n * -2.12194440e-4f;
  V p = V{} + 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * (r * r) + r + 1.0f;
  return 1.0f / (1.0f + p * Pow2(n));
}

// acc[t] += Σ_k x(k) · m[k·ms + t·mt] for t < T: T sums side by side, so that T
// chains of multiply-adds run at once instead of one waiting on the last.
template <int T, typename V, typename X>
inline void Accumulate(V* acc, int64_t count, X x, const V* m, int64_t ms, int64_t mt) {
  V sum[T];
  for (int t = 0; t < T; ++t) sum[t] = acc[t];
  for (int64_t k = 0; k < count; ++k) {
    const auto xk = x(k);
    for (int t = 0; t < T; ++t) sum[t] += xk * m[k * ms + t * mt];
  }
  for (int t = 0; t < T; ++t) acc[t] = sum[t];
}

// For every output o < outputs, in tiles of four: init(o, acc) sets acc, Accumulate
// adds Σ_k x(k) · m[k·ms + o·mt], and done(o, acc) takes it.
template <typename V, typename Init, typename X, typename Done>
inline void Sums(int64_t outputs, int64_t count, Init init, X x, const V* m, int64_t ms,
                 int64_t mt, Done done) {
  V acc[4];
  int64_t o = 0;
  for (; o + 4 <= outputs; o += 4) {
    for (int t = 0; t < 4; ++t) acc[t] = init(o + t);
    Accumulate<4>(acc, count, x, m + o * mt, ms, mt);
    for (int t = 0; t < 4; ++t) done(o + t, acc[t]);
  }
  for (; o < outputs; ++o) {
    acc[0] = init(o);
    Accumulate<1>(acc, count, x, m + o * mt, ms, mt);
    done(o, acc[0]);
  }
}

struct Layer {
  const float* w_in;  // [fan_in, fan_out, N], before the block
  const float* b_in;  // [fan_out, N]
  float* w;           // the same after it
  float* b;
  int64_t fan_in, fan_out;
};

struct Problem {
  int64_t nets, steps, batch, width0, max_width, act_count;
  const float* start;     // [K, B, H, N]: x_s W_0
  const float* gram;      // [K·B, K·B]: x_s x_rᵀ (unread when K = 1)
  const int32_t* labels;  // [K, B]
  const float* eta;       // [N]
  const float* b1_in;     // [H, N]
  float* b1;
  float* cost;   // [K, N]: each step's cost before its update
  float* delta;  // [K·B, H, N]: −η ∂C/∂z1 of every step
  std::vector<Layer> layers;
};

// The values of V that Block needs besides the problem's own buffers.
int64_t ScratchCount(const Problem& p) {
  int64_t count = p.act_count + 2 * p.batch * p.max_width + p.width0;  // + b1
  for (const Layer& layer : p.layers) count += (layer.fan_in + 1) * layer.fan_out;
  return count + p.steps * p.batch * p.width0;  // + −η δ of the block's steps
}

// The whole block for the networks n0 … n0 + m − 1, one per lane of V. Their
// parameters and −η δ are worked on in `scratch` (ScratchCount values of V), where
// they lie contiguous: in the problem's buffers a network's values are N floats apart.
void Block(const Problem& p, int64_t n0, int m, V* scratch) {
  const int64_t K = p.steps, B = p.batch, H = p.width0, N = p.nets;
  const int64_t L = static_cast<int64_t>(p.layers.size());
  const V eta = Get(p.eta + n0, m);
  V* act[16];
  V* w[16];
  V* bias[16];
  V* next = scratch;
  act[0] = next;
  next += B * H;
  for (int64_t l = 0; l < L; ++l) {
    act[l + 1] = next;
    next += B * p.layers[l].fan_out;
  }
  V* d_cur_start = next;
  next += B * p.max_width;
  V* d_prev_start = next;
  next += B * p.max_width;
  V* b1 = next;
  next += H;
  for (int64_t i = 0; i < H; ++i) b1[i] = Get(p.b1_in + i * N + n0, m);
  for (int64_t l = 0; l < L; ++l) {
    const Layer& layer = p.layers[l];
    w[l] = next;
    next += layer.fan_in * layer.fan_out;
    bias[l] = next;
    next += layer.fan_out;
    for (int64_t k = 0; k < layer.fan_in * layer.fan_out; ++k) w[l][k] = Get(layer.w_in + k * N + n0, m);
    for (int64_t j = 0; j < layer.fan_out; ++j) bias[l][j] = Get(layer.b_in + j * N + n0, m);
  }
  V* delta = next;  // [K·B, H]

  for (int64_t s = 0; s < K; ++s) {
    const int32_t* labels = p.labels + s * B;
    // z1 = x_s W_s = x_s W_0 + Σ_{r < s} (x_s x_rᵀ)(−η δ_r), then a0 = σ(z1 + b1).
    for (int64_t b = 0; b < B; ++b) {
      const float* gram_row = p.gram + (s * B + b) * (K * B);
      V* a0 = act[0] + b * H;
      Sums<V>(
          H, s * B, [&](int64_t i) { return Get(p.start + ((s * B + b) * H + i) * N + n0, m); },
          [&](int64_t r) { return gram_row[r]; }, delta, H, 1,
          [&](int64_t i, V z) { a0[i] = Sigmoid(z + b1[i]); });
    }
    for (int64_t l = 0; l < L; ++l) {
      const int64_t I = p.layers[l].fan_in, J = p.layers[l].fan_out;
      const V* in = act[l];
      V* out = act[l + 1];
      const V* bl = bias[l];
      for (int64_t b = 0; b < B; ++b) {
        Sums<V>(
            J, I, [&](int64_t j) { return bl[j]; }, [&](int64_t i) { return in[b * I + i]; },
            w[l], J, 1, [&](int64_t j, V z) { out[b * J + j] = Sigmoid(z); });
      }
    }

    // The quadratic cost, 1/B Σ_b ½‖t − a‖², and its gradient with respect to the
    // output layer's pre-activations, (a − t) / B · a (1 − a).
    V* d_cur = d_cur_start;
    V* d_prev = d_prev_start;
    const int64_t O = L > 0 ? p.layers[L - 1].fan_out : H;
    const float inv_b = 1.0f / static_cast<float>(B);
    V total{};
    for (int64_t b = 0; b < B; ++b) {
      V row{};
      for (int64_t o = 0; o < O; ++o) {
        const V y = act[L][b * O + o];
        const V e = (o == labels[b] ? 1.0f : 0.0f) - y;
        row += e * e;
        d_cur[b * O + o] = -e * inv_b * (y * (1.0f - y));
      }
      total += row;
    }
    Put(p.cost + s * N + n0, 0.5f * (total * inv_b), m);

    // Backward through the later layers, each updated once its δ is through it.
    for (int64_t l = L - 1; l >= 0; --l) {
      const int64_t I = p.layers[l].fan_in, J = p.layers[l].fan_out;
      const V* a = act[l];
      for (int64_t b = 0; b < B; ++b) {  // δ Wᵀ ⊙ a (1 − a), with W before the update
        const V* d = d_cur + b * J;
        Sums<V>(
            I, J, [](int64_t) { return V{}; }, [&](int64_t j) { return d[j]; }, w[l], 1, J,
            [&](int64_t i, V sum) {
              const V ai = a[b * I + i];
              d_prev[b * I + i] = sum * (ai * (1.0f - ai));
            });
      }
      for (int64_t i = 0; i < I; ++i) {  // W −= η aᵀ δ
        V* row = w[l] + i * J;
        Sums<V>(
            J, B, [](int64_t) { return V{}; }, [&](int64_t b) { return a[b * I + i]; }, d_cur, J,
            1, [&](int64_t j, V grad) { row[j] -= eta * grad; });
      }
      for (int64_t j = 0; j < J; ++j) {
        V grad{};
        for (int64_t b = 0; b < B; ++b) grad += d_cur[b * J + j];
        bias[l][j] -= eta * grad;
      }
      std::swap(d_cur, d_prev);
    }
    // d_cur is now ∂C/∂z1 of this step.
    V* d_out = delta + s * B * H;
    for (int64_t i = 0; i < H; ++i) {
      V grad{};
      for (int64_t b = 0; b < B; ++b) grad += d_cur[b * H + i];
      b1[i] -= eta * grad;
    }
    for (int64_t k = 0; k < B * H; ++k) d_out[k] = -eta * d_cur[k];
  }

  for (int64_t k = 0; k < K * B * H; ++k) Put(p.delta + k * N + n0, delta[k], m);
  for (int64_t i = 0; i < H; ++i) Put(p.b1 + i * N + n0, b1[i], m);
  for (int64_t l = 0; l < L; ++l) {
    const Layer& layer = p.layers[l];
    for (int64_t k = 0; k < layer.fan_in * layer.fan_out; ++k) Put(layer.w + k * N + n0, w[l][k], m);
    for (int64_t j = 0; j < layer.fan_out; ++j) Put(layer.b + j * N + n0, bias[l][j], m);
  }
}

struct Shared {
  Problem problem;
  int64_t groups = 0;  // of kLanes networks, the last one perhaps short
  std::atomic<int64_t> next{0};
  std::atomic<int64_t> done{0};
};

// Takes groups one at a time until none is left; XLA's threads and the caller's share them.
void Work(Shared& shared) {
  const Problem& p = shared.problem;
  std::vector<Vec> scratch;  // allocated once a group is claimed: a late helper needs none
  for (int64_t g; (g = shared.next.fetch_add(1)) < shared.groups;) {
    if (scratch.empty()) scratch.resize(ScratchCount(p));
    const int64_t n0 = g * kLanes;
    Block(p, n0, static_cast<int>(std::min<int64_t>(kLanes, p.nets - n0)), scratch.data());
    shared.done.fetch_add(1, std::memory_order_release);
  }
}

ffi::Error HeadBlock(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> start,
                     ffi::Buffer<ffi::F32> gram, ffi::Buffer<ffi::S32> labels,
                     ffi::Buffer<ffi::F32> eta, ffi::Buffer<ffi::F32> b1,
                     ffi::RemainingArgs layers, ffi::ResultBuffer<ffi::F32> cost,
                     ffi::ResultBuffer<ffi::F32> delta, ffi::ResultBuffer<ffi::F32> b1_out,
                     ffi::RemainingRets layers_out) {
  auto shared = std::make_shared<Shared>();
  Problem& p = shared->problem;
  const auto dims = start.dimensions();
  if (dims.size() != 4) return ffi::Error::InvalidArgument("native head: start must be [K, B, H, N]");
  p.steps = dims[0];
  p.batch = dims[1];
  p.width0 = dims[2];
  p.nets = dims[3];
  const int64_t K = p.steps, B = p.batch, H = p.width0, N = p.nets;
  if (K > 1 && gram.element_count() != K * B * K * B) {
    return ffi::Error::InvalidArgument("native head: gram must be [K·B, K·B]");
  }
  if (labels.element_count() != K * B || eta.element_count() != N ||
      b1.element_count() != H * N || b1_out->element_count() != H * N ||
      cost->element_count() != K * N || delta->element_count() != K * B * H * N) {
    return ffi::Error::InvalidArgument(
        "native head: labels [K, B], eta [N], b1 [H, N], cost [K, N] and delta [K·B, H, N] "
        "must match start [K, B, H, N]");
  }
  p.start = start.typed_data();
  p.gram = gram.typed_data();
  p.labels = labels.typed_data();
  p.eta = eta.typed_data();
  p.b1_in = b1.typed_data();
  p.b1 = b1_out->typed_data();
  p.cost = cost->typed_data();
  p.delta = delta->typed_data();
  if (layers.size() % 2 != 0 || layers.size() != layers_out.size() || layers.size() > 30) {
    return ffi::Error::InvalidArgument("native head: up to 15 later layers, as (W, b) pairs");
  }
  p.max_width = p.width0;
  p.act_count = p.batch * p.width0;
  for (size_t k = 0; k < layers.size(); k += 2) {
    auto w = layers.get<ffi::Buffer<ffi::F32>>(k);
    auto b = layers.get<ffi::Buffer<ffi::F32>>(k + 1);
    auto w_out = layers_out.get<ffi::Buffer<ffi::F32>>(k);
    auto b_out = layers_out.get<ffi::Buffer<ffi::F32>>(k + 1);
    if (!w.has_value() || !b.has_value() || !w_out.has_value() || !b_out.has_value()) {
      return ffi::Error::InvalidArgument("native head: every layer must be float32");
    }
    const auto shape = w->dimensions();
    const int64_t fan_in = p.layers.empty() ? H : p.layers.back().fan_out;
    if (shape.size() != 3 || shape[0] != fan_in || shape[2] != N ||
        w_out.value()->element_count() != w->element_count() ||
        b->element_count() != shape[1] * N || b_out.value()->element_count() != shape[1] * N) {
      return ffi::Error::InvalidArgument(
          "native head: each later layer must be W [I, J, N] and b [J, N], I the width "
          "before it");
    }
    Layer layer{w->typed_data(), b->typed_data(), (*w_out)->typed_data(),
                (*b_out)->typed_data(), shape[0], shape[1]};
    p.max_width = std::max({p.max_width, layer.fan_in, layer.fan_out});
    p.act_count += p.batch * layer.fan_out;
    p.layers.push_back(layer);
  }
  shared->groups = p.nets / kLanes + (p.nets % kLanes != 0);
  const int64_t helpers = std::min<int64_t>(pool.num_threads(), shared->groups) - 1;
  for (int64_t t = 0; t < helpers; ++t) pool.Schedule([shared] { Work(*shared); });
  Work(*shared);
  // A helper that has not started when the groups run out finds none and returns.
  while (shared->done.load(std::memory_order_acquire) < shared->groups) std::this_thread::yield();
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(GdJaxHeadBlock, HeadBlock,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()  // start
                                  .Arg<ffi::Buffer<ffi::F32>>()  // gram
                                  .Arg<ffi::Buffer<ffi::S32>>()  // labels
                                  .Arg<ffi::Buffer<ffi::F32>>()  // eta
                                  .Arg<ffi::Buffer<ffi::F32>>()  // b1
                                  .RemainingArgs()               // (W, b) of each later layer
                                  .Ret<ffi::Buffer<ffi::F32>>()  // cost
                                  .Ret<ffi::Buffer<ffi::F32>>()  // delta
                                  .Ret<ffi::Buffer<ffi::F32>>()  // b1
                                  .RemainingRets());             // the later layers
