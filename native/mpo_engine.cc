// Native kernels for the mpo engine (N-API, C ABI only: no node-addon-api dependency, builds offline).
//
// What lives here: the engine's heavy loops — the three matmul shapes of a linear layer, causal
// grouped-query attention forward/backward, log-softmax + gather (+ entropy) and its backward, the gated
// MLP activation, and the AdamW update. Everything else stays in TypeScript (O(N·d) and cheap).
//
// Why: on this class of machine plain JS loops reach ~1 GFLOP/s and WASM SIMD is capped at 128-bit lanes,
// while OpenBLAS sgemm reaches tens of GFLOP/s per core (AVX2/AVX-512, runtime-dispatched by OpenBLAS
// itself). With HAVE_CBLAS (set by native/build.mjs when cblas.h + libopenblas link) matmuls go to
// cblas_sgemm; otherwise a blocked C++ fallback is compiled. Elementwise loops are compiled for a
// x86-64-v2 baseline and cloned for x86-64-v3 (AVX2+FMA) with GCC target_clones, dispatched at load
// time, so one binary runs on any x86-64 CPU and uses AVX2 where present.
//
// Threads: OpenBLAS threads its own gemms; our loops split rows over a few std::threads (MPO_ENGINE_THREADS,
// default = hardware concurrency). Attention runs one (batch, kv-head) group per task with OpenBLAS set to
// 1 thread inside, so the two thread pools never oversubscribe the cores.

#include <node_api.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <thread>
#include <vector>

#ifdef HAVE_CBLAS
#include <cblas.h>
extern "C" {
void openblas_set_num_threads(int num_threads);
int openblas_get_num_threads(void);
}
#endif

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define MPO_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define MPO_CLONES
#endif

// Bumped whenever the exported function set or semantics change; kernels.ts refuses a stale addon.
static const int kAbiVersion = 5;

static int g_threads = 1;

// ------------------------------------------------------------------------------------------------------
// Branch-free expf (Cephes-style: 2^n · p(r), |rel err| < 2e-7) so the compiler vectorizes every loop that
// calls it (glibc expf is a scalar call; libmvec is not used reliably with target_clones).

static inline float fast_expf(float x) {
  x = std::min(88.3762626647949f, std::max(-87.3365447504f, x));
  float n = std::nearbyint(x * 1.44269504088896341f);
  float r = x - n * 0.693359375f;
  r = r + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.f;
  int32_t bits = ((int32_t)n + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, 4);
  return p * scale;
}

// ------------------------------------------------------------------------------------------------------
// Threading

static void parallel_for(int n, int threads, const std::function<void(int, int)>& fn) {
  // fn(begin, end) over [0, n) split into `threads` contiguous chunks.
  threads = std::max(1, std::min(threads, n));
  if (threads == 1) {
    fn(0, n);
    return;
  }
  std::vector<std::thread> pool;
  pool.reserve(threads - 1);
  int chunk = (n + threads - 1) / threads;
  for (int t = 1; t < threads; t++) {
    int b = t * chunk, e = std::min(n, b + chunk);
    if (b >= e) break;
    pool.emplace_back([&fn, b, e] { fn(b, e); });
  }
  fn(0, std::min(n, chunk));
  for (auto& th : pool) th.join();
}

// Threads worth using for `work` flops-ish units (tiny calls stay on the JS thread).
static int threads_for(double work) { return work < 2e5 ? 1 : g_threads; }

// ------------------------------------------------------------------------------------------------------
// GEMM: C = alpha·op(A)·op(B) + beta·C, row-major.

#ifndef HAVE_CBLAS

// Rows [i0, i1) of C; B is given non-transposed as Bn [K, N] with leading dim ldb.
MPO_CLONES static void gemm_rows(int i0, int i1, int N, int K, float alpha, const float* A, int lda, bool transA,
                                 const float* Bn, int ldb, float* C, int ldc) {
  const int KB = 256;
  for (int p0 = 0; p0 < K; p0 += KB) {
    int p1 = std::min(K, p0 + KB);
    int i = i0;
    for (; i + 3 < i1; i += 4) {
      float* c0 = C + (size_t)i * ldc;
      float* c1 = c0 + ldc;
      float* c2 = c1 + ldc;
      float* c3 = c2 + ldc;
      for (int p = p0; p < p1; p++) {
        float a0, a1, a2, a3;
        if (transA) {
          const float* ap = A + (size_t)p * lda + i;
          a0 = ap[0]; a1 = ap[1]; a2 = ap[2]; a3 = ap[3];
        } else {
          a0 = A[(size_t)i * lda + p]; a1 = A[(size_t)(i + 1) * lda + p];
          a2 = A[(size_t)(i + 2) * lda + p]; a3 = A[(size_t)(i + 3) * lda + p];
        }
        a0 *= alpha; a1 *= alpha; a2 *= alpha; a3 *= alpha;
        const float* b = Bn + (size_t)p * ldb;
        for (int j = 0; j < N; j++) {
          float bj = b[j];
          c0[j] += a0 * bj; c1[j] += a1 * bj; c2[j] += a2 * bj; c3[j] += a3 * bj;
        }
      }
    }
    for (; i < i1; i++) {
      float* c = C + (size_t)i * ldc;
      for (int p = p0; p < p1; p++) {
        float a = alpha * (transA ? A[(size_t)p * lda + i] : A[(size_t)i * lda + p]);
        const float* b = Bn + (size_t)p * ldb;
        for (int j = 0; j < N; j++) c[j] += a * b[j];
      }
    }
  }
}

static void gemm(bool transA, bool transB, int M, int N, int K, float alpha, const float* A, int lda, const float* B,
                 int ldb, float beta, float* C, int ldc, int threads) {
  for (int i = 0; i < M; i++) {
    float* c = C + (size_t)i * ldc;
    if (beta == 0.f) std::memset(c, 0, sizeof(float) * N);
    else if (beta != 1.f) for (int j = 0; j < N; j++) c[j] *= beta;
  }
  std::vector<float> packed;
  const float* Bn = B;
  int ldbn = ldb;
  if (transB) {  // pack op(B) = Bᵀ into [K, N]
    packed.resize((size_t)K * N);
    for (int j = 0; j < N; j++)
      for (int p = 0; p < K; p++) packed[(size_t)p * N + j] = B[(size_t)j * ldb + p];
    Bn = packed.data();
    ldbn = N;
  }
  int t = threads_for((double)M * N * K) > 1 ? threads : 1;
  parallel_for(M, t, [&](int b, int e) { gemm_rows(b, e, N, K, alpha, A, lda, transA, Bn, ldbn, C, ldc); });
}
#else
static void gemm(bool transA, bool transB, int M, int N, int K, float alpha, const float* A, int lda, const float* B,
                 int ldb, float beta, float* C, int ldc, int /*threads*/) {
  cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans, M, N, K, alpha, A,
              lda, B, ldb, beta, C, ldc);
}
#endif

// ------------------------------------------------------------------------------------------------------
// Attention (causal, grouped-query). q [B*T, H*D], k/v [B*T, Hkv*D], P [B, H, T, T].

// Softmax of the causal rows of S in place (zeros above the diagonal); lse[t] = log Σ exp(row).
MPO_CLONES static void causal_softmax_rows(float* S, float* lse, int T) {
  for (int t = 0; t < T; t++) {
    float* row = S + (size_t)t * T;
    float mx = -INFINITY;
    for (int s = 0; s <= t; s++) mx = std::max(mx, row[s]);
    float sum = 0.f;
    for (int s = 0; s <= t; s++) {
      float e = fast_expf(row[s] - mx);
      row[s] = e;
      sum += e;
    }
    float inv = 1.f / sum;
    for (int s = 0; s <= t; s++) row[s] *= inv;
    for (int s = t + 1; s < T; s++) row[s] = 0.f;
    lse[t] = mx + logf(sum);
  }
}

// P = exp(S − lse) on the causal rows (S holds the scaled scores), zeros above the diagonal.
MPO_CLONES static void causal_probs_from_lse(float* S, const float* lse, int T) {
  for (int t = 0; t < T; t++) {
    float* row = S + (size_t)t * T;
    float l = lse[t];
    for (int s = 0; s <= t; s++) row[s] = fast_expf(row[s] - l);
    for (int s = t + 1; s < T; s++) row[s] = 0.f;
  }
}

// dS = P ⊙ (dP − Dt) · scale with Dt = dO_t·out_t (= Σ_s P·dP); dS holds dP on entry.
MPO_CLONES static void softmax_bwd_rows(float* dS, const float* P, const float* dout, const float* out, int ld, int T,
                                        int D, float scale) {
  for (int t = 0; t < T; t++) {
    float* d = dS + (size_t)t * T;
    const float* p = P + (size_t)t * T;
    const float* dor = dout + (size_t)t * ld;
    const float* orow = out + (size_t)t * ld;
    float Dt = 0.f;
    for (int i = 0; i < D; i++) Dt += dor[i] * orow[i];
    for (int s = 0; s <= t; s++) d[s] = p[s] * (d[s] - Dt) * scale;
    for (int s = t + 1; s < T; s++) d[s] = 0.f;
  }
}

struct BlasSingleThread {
  // OpenBLAS threads are global: drop to 1 inside our own parallel region, restore after.
#ifdef HAVE_CBLAS
  int saved;
  BlasSingleThread() : saved(openblas_get_num_threads()) { openblas_set_num_threads(1); }
  ~BlasSingleThread() { openblas_set_num_threads(saved); }
#endif
};

// Per (batch, head): S = scale·Q·Kᵀ (sgemm on strided views), causal softmax (+ lse), out = P·V.
// Only lse [B, H, T] is kept; the T×T matrix lives in a per-thread scratch.
static void attention_forward(float* out, float* lse, const float* q, const float* k, const float* v, int B, int T,
                              int H, int Hkv, int D) {
  const float scale = 1.f / std::sqrt((float)D);
  const int group = H / Hkv;
  const int qRow = H * D, kvRow = Hkv * D;
  BlasSingleThread guard;
  parallel_for(B * H, threads_for((double)B * H * T * T * D), [&](int b0, int b1) {
    std::vector<float> S((size_t)T * T);
    for (int bh = b0; bh < b1; bh++) {
      int b = bh / H, h = bh % H, kh = h / group;
      const float* qb = q + (size_t)b * T * qRow + h * D;
      const float* kb = k + (size_t)b * T * kvRow + kh * D;
      const float* vb = v + (size_t)b * T * kvRow + kh * D;
      gemm(false, true, T, T, D, scale, qb, qRow, kb, kvRow, 0.f, S.data(), T, 1);
      causal_softmax_rows(S.data(), lse + (size_t)bh * T, T);
      gemm(false, false, T, D, T, 1.f, S.data(), T, vb, kvRow, 0.f, out + (size_t)b * T * qRow + h * D, qRow, 1);
    }
  });
}

static void attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* out, const float* lse,
                               const float* q, const float* k, const float* v, int B, int T, int H, int Hkv, int D) {
  const float scale = 1.f / std::sqrt((float)D);
  const int group = H / Hkv;
  const int qRow = H * D, kvRow = Hkv * D;
  BlasSingleThread guard;
  // One task per (batch, kv head): the query heads sharing a kv head accumulate into the same dk/dv rows.
  parallel_for(B * Hkv, threads_for((double)B * H * T * T * D), [&](int g0, int g1) {
    std::vector<float> P((size_t)T * T), dS((size_t)T * T);
    for (int g = g0; g < g1; g++) {
      int b = g / Hkv, kh = g % Hkv;
      const float* kb = k + (size_t)b * T * kvRow + kh * D;
      const float* vb = v + (size_t)b * T * kvRow + kh * D;
      float* dkb = dk + (size_t)b * T * kvRow + kh * D;
      float* dvb = dv + (size_t)b * T * kvRow + kh * D;
      for (int h = kh * group; h < (kh + 1) * group; h++) {
        const float* qb = q + (size_t)b * T * qRow + h * D;
        const float* dob = dout + (size_t)b * T * qRow + h * D;
        const float* ob = out + (size_t)b * T * qRow + h * D;
        float* dqb = dq + (size_t)b * T * qRow + h * D;
        gemm(false, true, T, T, D, scale, qb, qRow, kb, kvRow, 0.f, P.data(), T, 1);      // S = scale·Q·Kᵀ
        causal_probs_from_lse(P.data(), lse + ((size_t)b * H + h) * T, T);                  // P
        gemm(false, true, T, T, D, 1.f, dob, qRow, vb, kvRow, 0.f, dS.data(), T, 1);     // dP = dO·Vᵀ
        gemm(true, false, T, D, T, 1.f, P.data(), T, dob, qRow, 1.f, dvb, kvRow, 1);     // dV += Pᵀ·dO
        softmax_bwd_rows(dS.data(), P.data(), dob, ob, qRow, T, D, scale);
        gemm(false, false, T, D, T, 1.f, dS.data(), T, kb, kvRow, 1.f, dqb, qRow, 1);    // dQ += dS·K
        gemm(true, false, T, D, T, 1.f, dS.data(), T, qb, qRow, 1.f, dkb, kvRow, 1);     // dK += dSᵀ·Q
      }
    }
  });
}

// ------------------------------------------------------------------------------------------------------
// Output head and elementwise kernels

MPO_CLONES static void log_softmax_gather_rows(int n0, int n1, float* logits, const int32_t* targets, float* lp,
                                               float* ent, int V) {
  for (int n = n0; n < n1; n++) {
    float* z = logits + (size_t)n * V;
    float mx = -INFINITY;
    for (int j = 0; j < V; j++) mx = std::max(mx, z[j]);
    float sum = 0.f;
    for (int j = 0; j < V; j++) sum += fast_expf(z[j] - mx);
    float lse = mx + logf(sum);
    for (int j = 0; j < V; j++) z[j] -= lse;
    if (ent) {
      float h = 0.f;
      for (int j = 0; j < V; j++) h -= fast_expf(z[j]) * z[j];
      ent[n] = h;
    }
    int t = targets[n];
    lp[n] = t >= 0 ? z[t] : 0.f;
  }
}

MPO_CLONES static void log_softmax_gather_bwd_rows(int n0, int n1, float* dz, const float* logp, const int32_t* targets,
                                                   const float* dlp, const float* dent, const float* ent, int V) {
  for (int n = n0; n < n1; n++) {
    float* d = dz + (size_t)n * V;
    const float* l = logp + (size_t)n * V;
    int t = targets[n];
    float a = (dlp && t >= 0) ? dlp[n] : 0.f;
    float e = dent ? dent[n] : 0.f;
    if (a == 0.f && e == 0.f) {
      std::memset(d, 0, sizeof(float) * V);
      continue;
    }
    float H = (e != 0.f && ent) ? ent[n] : 0.f;
    for (int j = 0; j < V; j++) {
      float p = fast_expf(l[j]);
      d[j] = -a * p - e * p * (l[j] + H);
    }
    if (t >= 0) d[t] += a;
  }
}

static inline float gelu_erf(float x) { return 0.5f * x * (1.f + erff(x * 0.70710678118654752f)); }
static inline float gelu_erf_grad(float x) {
  return 0.5f * (1.f + erff(x * 0.70710678118654752f)) + x * 0.3989422804014327f * expf(-0.5f * x * x);
}
static inline float gelu_tanh(float x) {
  float u = 0.7978845608028654f * (x + 0.044715f * x * x * x);
  return 0.5f * x * (1.f + tanhf(u));
}
static inline float gelu_tanh_grad(float x) {
  float u = 0.7978845608028654f * (x + 0.044715f * x * x * x);
  float th = tanhf(u);
  return 0.5f * (1.f + th) + 0.5f * x * (1.f - th * th) * 0.7978845608028654f * (1.f + 3.f * 0.044715f * x * x);
}

MPO_CLONES static void glu_fwd_range(int i0, int i1, float* m, const float* g, const float* u, int kind) {
  if (kind == 0) {
    if (u)
      for (int i = i0; i < i1; i++) m[i] = g[i] / (1.f + fast_expf(-g[i])) * u[i];
    else
      for (int i = i0; i < i1; i++) m[i] = g[i] / (1.f + fast_expf(-g[i]));
  } else {
    for (int i = i0; i < i1; i++) {
      float a = kind == 1 ? gelu_erf(g[i]) : gelu_tanh(g[i]);
      m[i] = u ? a * u[i] : a;
    }
  }
}

MPO_CLONES static void glu_bwd_range(int i0, int i1, float* dg, float* du, const float* dm, const float* g,
                                     const float* u, int kind) {
  if (kind == 0) {
    for (int i = i0; i < i1; i++) {
      float x = g[i];
      float s = 1.f / (1.f + fast_expf(-x));
      float uu = u ? u[i] : 1.f;
      if (du) du[i] = dm[i] * x * s;
      dg[i] = dm[i] * uu * s * (1.f + x * (1.f - s));
    }
  } else {
    for (int i = i0; i < i1; i++) {
      float x = g[i];
      float a = kind == 1 ? gelu_erf(x) : gelu_tanh(x);
      float ag = kind == 1 ? gelu_erf_grad(x) : gelu_tanh_grad(x);
      float uu = u ? u[i] : 1.f;
      if (du) du[i] = dm[i] * a;
      dg[i] = dm[i] * uu * ag;
    }
  }
}

MPO_CLONES static void adamw_range(int i0, int i1, float* p, const float* g, float* m, float* v, float b1, float b2,
                                   float eps, float shrink, float stepSize, float invSqrtBc2) {
  for (int i = i0; i < i1; i++) {
    float gi = g[i];
    float mi = b1 * m[i] + (1.f - b1) * gi;
    float vi = b2 * v[i] + (1.f - b2) * gi * gi;
    m[i] = mi;
    v[i] = vi;
    p[i] = p[i] * shrink - stepSize * mi / (std::sqrt(vi) * invSqrtBc2 + eps);
  }
}

MPO_CLONES static void rmsnorm_fwd(float* out, float* rstd, const float* x, const float* w, int N, int d, float eps) {
  for (int n = 0; n < N; n++) {
    const float* xr = x + (size_t)n * d;
    float* o = out + (size_t)n * d;
    float ss = 0.f;
    for (int i = 0; i < d; i++) ss += xr[i] * xr[i];
    float r = 1.f / std::sqrt(ss / d + eps);
    rstd[n] = r;
    for (int i = 0; i < d; i++) o[i] = xr[i] * r * w[i];
  }
}

MPO_CLONES static void rmsnorm_bwd(float* dx, float* dw, const float* dout, const float* x, const float* w,
                                   const float* rstd, int N, int d) {
  for (int n = 0; n < N; n++) {
    const float* xr = x + (size_t)n * d;
    const float* g = dout + (size_t)n * d;
    float* dxr = dx + (size_t)n * d;
    float r = rstd[n];
    float gx = 0.f;
    for (int i = 0; i < d; i++) {
      gx += g[i] * w[i] * xr[i];
      dw[i] += g[i] * xr[i] * r;
    }
    float c = r * r * r * gx / d;
    for (int i = 0; i < d; i++) dxr[i] += r * g[i] * w[i] - c * xr[i];
  }
}

MPO_CLONES static void rope_apply(float* x, const int32_t* pos, int N, int nHeads, int D, const float* cos,
                                  const float* sin, float sign) {
  int half = D / 2;
  for (int n = 0; n < N; n++) {
    const float* c = cos + (size_t)pos[n] * half;
    const float* sn = sin + (size_t)pos[n] * half;
    for (int h = 0; h < nHeads; h++) {
      float* a = x + ((size_t)n * nHeads + h) * D;
      float* b = a + half;
      for (int i = 0; i < half; i++) {
        float s = sign * sn[i];
        float x1 = a[i], x2 = b[i];
        a[i] = x1 * c[i] - x2 * s;
        b[i] = x2 * c[i] + x1 * s;
      }
    }
  }
}

MPO_CLONES static double sum_squares(const float* g, size_t n) {
  // Blocks of float partial sums, accumulated in double: fast and accurate enough for a norm.
  double total = 0;
  const size_t BLK = 4096;
  for (size_t b = 0; b < n; b += BLK) {
    size_t e = std::min(n, b + BLK);
    float acc = 0.f;
    for (size_t i = b; i < e; i++) acc += g[i] * g[i];
    total += acc;
  }
  return total;
}

MPO_CLONES static void attention_decode_row(float* o, const float* qr, const float* kb, const float* vb, int P, int D,
                                            float scale, float* sc) {
  float mx = -INFINITY;
  for (int s = 0; s <= P; s++) {
    const float* kk = kb + (size_t)s * D;
    float dot = 0.f;
    for (int i = 0; i < D; i++) dot += qr[i] * kk[i];
    dot *= scale;
    sc[s] = dot;
    mx = std::max(mx, dot);
  }
  float sum = 0.f;
  for (int s = 0; s <= P; s++) {
    float e = fast_expf(sc[s] - mx);
    sc[s] = e;
    sum += e;
  }
  float inv = 1.f / sum;
  for (int i = 0; i < D; i++) o[i] = 0.f;
  for (int s = 0; s <= P; s++) {
    float p = sc[s] * inv;
    const float* vv = vb + (size_t)s * D;
    for (int i = 0; i < D; i++) o[i] += p * vv[i];
  }
}

// One sampled token per row; same semantics as ops.ts sampleToken (cut-off τ from the top-k / top-p
// candidates, ties with τ kept), but the candidates come from nth_element on a growing prefix instead of a
// full sort: top-p mass is usually reached within the first few dozen tokens.
MPO_CLONES static void sample_row(const float* z, int V, float temperature, int topK, float topP, float u,
                                  float* probs, float* sorted, int32_t* tok, float* lp) {
  float mx = -INFINITY;
  int arg = 0;
  for (int j = 0; j < V; j++)
    if (z[j] > mx) {
      mx = z[j];
      arg = j;
    }
  bool greedy = temperature <= 0.f || topK == 1;
  float invT = greedy ? 1.f : 1.f / temperature;
  float sum = 0.f, total = 0.f;
  if (invT == 1.f) {
    for (int j = 0; j < V; j++) {
      float e = fast_expf(z[j] - mx);
      probs[j] = e;
      sum += e;
    }
    total = sum;
  } else {
    for (int j = 0; j < V; j++) {
      sum += fast_expf(z[j] - mx);
      float p = fast_expf((z[j] - mx) * invT);
      probs[j] = p;
      total += p;
    }
  }
  float lse = mx + logf(sum);
  if (greedy) {
    *tok = arg;
    *lp = z[arg] - lse;
    return;
  }
  float tau = 0.f;
  if ((topK > 0 && topK < V) || topP < 1.f) {
    int keep = topK > 0 ? std::min(topK, V) : V;
    std::copy(probs, probs + V, sorted);
    float kept = total;
    if (topK > 0 && keep < V) {
      std::nth_element(sorted, sorted + keep - 1, sorted + V, std::greater<float>());
      kept = 0.f;
      for (int i = 0; i < keep; i++) kept += sorted[i];
      tau = sorted[keep - 1];
    }
    if (topP < 1.f) {
      int m = std::min(keep, 64);
      for (;;) {
        if (m < keep) std::nth_element(sorted, sorted + m - 1, sorted + keep, std::greater<float>());
        std::sort(sorted, sorted + m, std::greater<float>());
        float c = 0.f;
        int hit = -1;
        for (int i = 0; i < m; i++) {
          c += sorted[i];
          if (c >= topP * kept) {
            hit = i;
            break;
          }
        }
        if (hit >= 0) {
          tau = sorted[hit];
          break;
        }
        if (m == keep) {
          tau = sorted[keep - 1];
          break;
        }
        m = std::min(keep, m * 4);
      }
    }
    total = 0.f;
    for (int j = 0; j < V; j++)
      if (probs[j] >= tau) total += probs[j];
  }
  float r = u * total;
  int token = arg;
  for (int j = 0; j < V; j++) {
    float p = probs[j];
    if (p < tau) continue;
    token = j;
    r -= p;
    if (r < 0.f) break;
  }
  *tok = token;
  *lp = z[token] - lse;
}

// ------------------------------------------------------------------------------------------------------
// N-API glue

#define CHECK(call)                                                   \
  do {                                                                \
    if ((call) != napi_ok) {                                          \
      napi_throw_error(env, nullptr, "mpo_engine: N-API call failed"); \
      return nullptr;                                                 \
    }                                                                 \
  } while (0)

struct Args {
  napi_env env;
  napi_value argv[16];
  size_t argc = 16;
  bool ok = true;
};

static bool get_args(napi_env env, napi_callback_info info, Args& a, size_t need) {
  a.env = env;
  if (napi_get_cb_info(env, info, &a.argc, a.argv, nullptr, nullptr) != napi_ok || a.argc < need) {
    napi_throw_type_error(env, nullptr, "mpo_engine: wrong number of arguments");
    return false;
  }
  return true;
}

// Float32Array / Int32Array (or null/undefined → nullptr when optional). `len` receives the element count.
template <typename T>
static T* arr(Args& a, int i, napi_typedarray_type want, bool optional, size_t* len = nullptr) {
  if (!a.ok) return nullptr;
  napi_valuetype vt;
  napi_typeof(a.env, a.argv[i], &vt);
  if (optional && (vt == napi_null || vt == napi_undefined)) return nullptr;
  bool is;
  napi_is_typedarray(a.env, a.argv[i], &is);
  if (!is) {
    napi_throw_type_error(a.env, nullptr, "mpo_engine: expected a typed array argument");
    a.ok = false;
    return nullptr;
  }
  napi_typedarray_type type;
  size_t length;
  void* data;
  napi_value ab;
  size_t off;
  napi_get_typedarray_info(a.env, a.argv[i], &type, &length, &data, &ab, &off);
  if (type != want) {
    napi_throw_type_error(a.env, nullptr,
                          want == napi_float32_array ? "mpo_engine: expected Float32Array" : "mpo_engine: expected Int32Array");
    a.ok = false;
    return nullptr;
  }
  if (len) *len = length;
  return static_cast<T*>(data);
}

static float* f32(Args& a, int i, size_t need, bool optional = false) {
  size_t len = 0;
  float* p = arr<float>(a, i, napi_float32_array, optional, &len);
  if (a.ok && p && len < need) {
    napi_throw_range_error(a.env, nullptr, "mpo_engine: typed array shorter than the given dimensions");
    a.ok = false;
    return nullptr;
  }
  return p;
}

static int32_t* i32(Args& a, int i, size_t need) {
  size_t len = 0;
  int32_t* p = arr<int32_t>(a, i, napi_int32_array, false, &len);
  if (a.ok && p && len < need) {
    napi_throw_range_error(a.env, nullptr, "mpo_engine: Int32Array shorter than the given dimensions");
    a.ok = false;
    return nullptr;
  }
  return p;
}

static int num(Args& a, int i) {
  int32_t v = 0;
  if (a.ok && napi_get_value_int32(a.env, a.argv[i], &v) != napi_ok) {
    napi_throw_type_error(a.env, nullptr, "mpo_engine: expected an integer argument");
    a.ok = false;
  }
  return v;
}

static double dbl(Args& a, int i) {
  double v = 0;
  if (a.ok && napi_get_value_double(a.env, a.argv[i], &v) != napi_ok) {
    napi_throw_type_error(a.env, nullptr, "mpo_engine: expected a number argument");
    a.ok = false;
  }
  return v;
}

static bool boolean(Args& a, int i) {
  bool v = false;
  if (a.ok && napi_get_value_bool(a.env, a.argv[i], &v) != napi_ok) {
    napi_throw_type_error(a.env, nullptr, "mpo_engine: expected a boolean argument");
    a.ok = false;
  }
  return v;
}

// matmulXWt(y, x, w, N, I, O, accumulate): y[N,O] = x[N,I]·Wᵀ (+y)
static napi_value MatmulXWt(napi_env env, napi_callback_info info) {
  Args a;
  if (!get_args(env, info, a, 7)) return nullptr;
  int N = num(a, 3), I = num(a, 4), O = num(a, 5);
  bool acc = boolean(a, 6);
  float* y = f32(a, 0, (size_t)N * O);
  float* x = f32(a, 1, (size_t)N * I);
  float* w = f32(a, 2, (size_t)O * I);
  if (!a.ok) return nullptr;
  if (N > 0 && O > 0) gemm(false, true, N, O, I, 1.f, x, I, w, I, acc ? 1.f : 0.f, y, O, g_threads);
  return nullptr;
}

// matmulDyW(dx, dy, w, N, O, I, accumulate): dx[N,I] (+)= dy[N,O]·W[O,I]
static napi_value MatmulDyW(napi_env env, napi_callback_info info) {
  Args a;
  if (!get_args(env, info, a, 7)) return nullptr;
  int N = num(a, 3), O = num(a, 4), I = num(a, 5);
  bool acc = boolean(a, 6);
  float* dx = f32(a, 0, (size_t)N * I);
  float* dy = f32(a, 1, (size_t)N * O);
  float* w = f32(a, 2, (size_t)O * I);
  if (!a.ok) return nullptr;
  if (N > 0 && I > 0) gemm(false, false, N, I, O, 1.f, dy, O, w, I, acc ? 1.f : 0.f, dx, I, g_threads);
  return nullptr;
}

// matmulDyTX(dw, dy, x, N, O, I): dW[O,I] += dyᵀ·x
static napi_value MatmulDyTX(napi_env env, napi_callback_info info) {
  Args a;
  if (!get_args(env, info, a, 6)) return nullptr;
  int N = num(a, 3), O = num(a, 4), I = num(a, 5);
  float* dw = f32(a, 0, (size_t)O * I);
  float* dy = f32(a, 1, (size_t)N * O);
  float* x = f32(a, 2, (size_t)N * I);
  if (!a.ok) return nullptr;
  if (N > 0 && O > 0) gemm(true, false, O, I, N, 1.f, dy, O, x, I, 1.f, dw, I, g_threads);
  return nullptr;
}

// attentionForward(out, lse, q, k, v, B, T, H, Hkv, D, scratch)
static napi_value AttentionForward(napi_env env, napi_callback_info info) {
  Args a;
  if (!get_args(env, info, a, 10)) return nullptr;
  int B = num(a, 5), T = num(a, 6), H = num(a, 7), Hkv = num(a, 8), D = num(a, 9);
  if (a.ok && (Hkv <= 0 || H % Hkv != 0)) {
    napi_throw_range_error(env, nullptr, "mpo_engine: H must be a multiple of Hkv");
    return nullptr;
  }
  size_t N = (size_t)B * T;
  float* out = f32(a, 0, N * H * D);
  float* lse = f32(a, 1, (size_t)B * H * T);
  float* q = f32(a, 2, N * H * D);
  float* k = f32(a, 3, N * Hkv * D);
  float* v = f32(a, 4, N * Hkv * D);
  if (!a.ok) return nullptr;
  attention_forward(out, lse, q, k, v, B, T, H, Hkv, D);
  return nullptr;
}

// attentionBackward(dq, dk, dv, dout, out, lse, q, k, v, B, T, H, Hkv, D, scratch)
static napi_value AttentionBackward(napi_env env, napi_callback_info info) {
  Args a;
  if (!get_args(env, info, a, 14)) return nullptr;
  int B = num(a, 9), T = num(a, 10), H = num(a, 11), Hkv = num(a, 12), D = num(a, 13);
  if (a.ok && (Hkv <= 0 || H % Hkv != 0)) {
    napi_throw_range_error(env, nullptr, "mpo_engine: H must be a multiple of Hkv");
    return nullptr;
  }
  size_t N = (size_t)B * T;
  float* dq = f32(a, 0, N * H * D);
  float* dk = f32(a, 1, N * Hkv * D);
  float* dv = f32(a, 2, N * Hkv * D);
  float* dout = f32(a, 3, N * H * D);
  float* out = f32(a, 4, N * H * D);
  float* lse = f32(a, 5, (size_t)B * H * T);
  float* q = f32(a, 6, N * H * D);
  float* k = f32(a, 7, N * Hkv * D);
  float* v = f32(a, 8, N * Hkv * D);
  if (!a.ok) return nullptr;
  attention_backward(dq, dk, dv, dout, out, lse, q, k, v, B, T, H, Hkv, D);
  return nullptr;
}

// logSoftmaxGather(logits, targets, lp, ent|null, N, V)
static napi_value LogSoftmaxGather(napi_env env, napi_callback_info info) {
  Args a;
  if (!get_args(env, info, a, 6)) return nullptr;
  int N = num(a, 4), V = num(a, 5);
  float* z = f32(a, 0, (size_t)N * V);
  int32_t* t = i32(a, 1, N);
  float* lp = f32(a, 2, N);
  float* ent = f32(a, 3, N, true);
  if (!a.ok) return nullptr;
  for (int n = 0; n < N; n++)
    if (t[n] >= V) {
      napi_throw_range_error(env, nullptr, "mpo_engine: target outside vocab");
      return nullptr;
    }
  parallel_for(N, threads_for((double)N * V * 8),
               [&](int b, int e) { log_softmax_gather_rows(b, e, z, t, lp, ent, V); });
  return nullptr;
}

// logSoftmaxGatherBackward(dlogits, logp, targets, dlp|null, dent|null, ent|null, N, V)
static napi_value LogSoftmaxGatherBackward(napi_env env, napi_callback_info info) {
  Args a;
  if (!get_args(env, info, a, 8)) return nullptr;
  int N = num(a, 6), V = num(a, 7);
  float* dz = f32(a, 0, (size_t)N * V);
  float* lp = f32(a, 1, (size_t)N * V);
  int32_t* t = i32(a, 2, N);
  float* dlp = f32(a, 3, N, true);
  float* dent = f32(a, 4, N, true);
  float* ent = f32(a, 5, N, true);
  if (!a.ok) return nullptr;
  parallel_for(N, threads_for((double)N * V * 4),
               [&](int b, int e) { log_softmax_gather_bwd_rows(b, e, dz, lp, t, dlp, dent, ent, V); });
  return nullptr;
}

// gluForward(m, g, u|null, n, kind)
static napi_value GluForward(napi_env env, napi_callback_info info) {
  Args a;
  if (!get_args(env, info, a, 5)) return nullptr;
  int n = num(a, 3), kind = num(a, 4);
  float* m = f32(a, 0, n);
  float* g = f32(a, 1, n);
  float* u = f32(a, 2, n, true);
  if (!a.ok) return nullptr;
  parallel_for(n, threads_for((double)n * 8), [&](int b, int e) { glu_fwd_range(b, e, m, g, u, kind); });
  return nullptr;
}

// gluBackward(dg, du|null, dm, g, u|null, n, kind)
static napi_value GluBackward(napi_env env, napi_callback_info info) {
  Args a;
  if (!get_args(env, info, a, 7)) return nullptr;
  int n = num(a, 5), kind = num(a, 6);
  float* dg = f32(a, 0, n);
  float* du = f32(a, 1, n, true);
  float* dm = f32(a, 2, n);
  float* g = f32(a, 3, n);
  float* u = f32(a, 4, n, true);
  if (!a.ok) return nullptr;
  parallel_for(n, threads_for((double)n * 8), [&](int b, int e) { glu_bwd_range(b, e, dg, du, dm, g, u, kind); });
  return nullptr;
}

// adamw(p, g, m, v, b1, b2, eps, shrink, stepSize, invSqrtBc2)
static napi_value AdamwUpdate(napi_env env, napi_callback_info info) {
  Args a;
  if (!get_args(env, info, a, 10)) return nullptr;
  size_t n = 0;
  float* p = arr<float>(a, 0, napi_float32_array, false, &n);
  float* g = f32(a, 1, n);
  float* m = f32(a, 2, n);
  float* v = f32(a, 3, n);
  float b1 = (float)dbl(a, 4), b2 = (float)dbl(a, 5), eps = (float)dbl(a, 6), shrink = (float)dbl(a, 7);
  float stepSize = (float)dbl(a, 8), isb = (float)dbl(a, 9);
  if (!a.ok) return nullptr;
  parallel_for((int)n, threads_for((double)n * 4),
               [&](int b, int e) { adamw_range(b, e, p, g, m, v, b1, b2, eps, shrink, stepSize, isb); });
  return nullptr;
}

// rmsnormForward(out, rstd, x, w, N, d, eps)
static napi_value RmsnormForward(napi_env env, napi_callback_info info) {
  Args a;
  if (!get_args(env, info, a, 7)) return nullptr;
  int N = num(a, 4), d = num(a, 5);
  float eps = (float)dbl(a, 6);
  float* out = f32(a, 0, (size_t)N * d);
  float* rstd = f32(a, 1, N);
  float* x = f32(a, 2, (size_t)N * d);
  float* w = f32(a, 3, d);
  if (!a.ok) return nullptr;
  rmsnorm_fwd(out, rstd, x, w, N, d, eps);
  return nullptr;
}

// rmsnormBackward(dx, dw, dout, x, w, rstd, N, d)
static napi_value RmsnormBackward(napi_env env, napi_callback_info info) {
  Args a;
  if (!get_args(env, info, a, 8)) return nullptr;
  int N = num(a, 6), d = num(a, 7);
  float* dx = f32(a, 0, (size_t)N * d);
  float* dw = f32(a, 1, d);
  float* dout = f32(a, 2, (size_t)N * d);
  float* x = f32(a, 3, (size_t)N * d);
  float* w = f32(a, 4, d);
  float* rstd = f32(a, 5, N);
  if (!a.ok) return nullptr;
  rmsnorm_bwd(dx, dw, dout, x, w, rstd, N, d);
  return nullptr;
}

// ropeApply(x, pos, N, nHeads, D, cos, sin, sign)
static napi_value RopeApply(napi_env env, napi_callback_info info) {
  Args a;
  if (!get_args(env, info, a, 8)) return nullptr;
  int N = num(a, 2), nH = num(a, 3), D = num(a, 4);
  float sign = (float)dbl(a, 7);
  float* x = f32(a, 0, (size_t)N * nH * D);
  int32_t* pos = i32(a, 1, N);
  size_t clen = 0, slen = 0;
  float* c = arr<float>(a, 5, napi_float32_array, false, &clen);
  float* sn = arr<float>(a, 6, napi_float32_array, false, &slen);
  if (!a.ok) return nullptr;
  size_t half = D / 2;
  for (int n = 0; n < N; n++)
    if (pos[n] < 0 || (size_t)(pos[n] + 1) * half > std::min(clen, slen)) {
      napi_throw_range_error(env, nullptr, "mpo_engine: RoPE position outside the cos/sin tables");
      return nullptr;
    }
  rope_apply(x, pos, N, nH, D, c, sn, sign);
  return nullptr;
}

// sumSquares(g) → Σ g²
static napi_value SumSquares(napi_env env, napi_callback_info info) {
  Args a;
  if (!get_args(env, info, a, 1)) return nullptr;
  size_t n = 0;
  float* g = arr<float>(a, 0, napi_float32_array, false, &n);
  if (!a.ok) return nullptr;
  napi_value r;
  CHECK(napi_create_double(env, sum_squares(g, n), &r));
  return r;
}

// attentionDecode(att, q, kc, vc, pos, slot, R, H, Hkv, D, Tc, scores)
static napi_value AttentionDecode(napi_env env, napi_callback_info info) {
  Args a;
  if (!get_args(env, info, a, 11)) return nullptr;
  int R = num(a, 6), H = num(a, 7), Hkv = num(a, 8), D = num(a, 9), Tc = num(a, 10);
  if (a.ok && (Hkv <= 0 || H % Hkv != 0)) {
    napi_throw_range_error(env, nullptr, "mpo_engine: H must be a multiple of Hkv");
    return nullptr;
  }
  float* att = f32(a, 0, (size_t)R * H * D);
  float* q = f32(a, 1, (size_t)R * H * D);
  size_t kcl = 0, vcl = 0;
  float* kc = arr<float>(a, 2, napi_float32_array, false, &kcl);
  float* vc = arr<float>(a, 3, napi_float32_array, false, &vcl);
  int32_t* pos = i32(a, 4, R);
  int32_t* slot = i32(a, 5, R);
  if (!a.ok) return nullptr;
  for (int r = 0; r < R; r++) {
    size_t end = (((size_t)slot[r] * Hkv + Hkv - 1) * Tc + Tc) * D;
    if (pos[r] < 0 || pos[r] >= Tc || slot[r] < 0 || end > std::min(kcl, vcl)) {
      napi_throw_range_error(env, nullptr, "mpo_engine: KV cache index out of range");
      return nullptr;
    }
  }
  const float scale = 1.f / std::sqrt((float)D);
  const int group = H / Hkv;
  double work = 0;
  for (int r = 0; r < R; r++) work += (double)(pos[r] + 1) * H * D * 4;
  parallel_for(R * H, threads_for(work), [&](int b, int e) {
    std::vector<float> sc(Tc);
    for (int rh = b; rh < e; rh++) {
      int r = rh / H, h = rh % H, kh = h / group;
      size_t base = ((size_t)slot[r] * Hkv + kh) * Tc * D;
      attention_decode_row(att + (size_t)rh * D, q + (size_t)rh * D, kc + base, vc + base, pos[r], D, scale, sc.data());
    }
  });
  return nullptr;
}

// sampleRows(logits, R, V, temperature, topK, topP, uniforms, tokens, logprobs, scratch)
static napi_value SampleRows(napi_env env, napi_callback_info info) {
  Args a;
  if (!get_args(env, info, a, 9)) return nullptr;
  int R = num(a, 1), V = num(a, 2);
  float temperature = (float)dbl(a, 3);
  int topK = num(a, 4);
  float topP = (float)dbl(a, 5);
  float* z = f32(a, 0, (size_t)R * V);
  float* uni = f32(a, 6, R);
  int32_t* tok = i32(a, 7, R);
  float* lp = f32(a, 8, R);
  if (!a.ok) return nullptr;
  parallel_for(R, threads_for((double)R * V * 6), [&](int b, int e) {
    std::vector<float> scratch((size_t)2 * V);
    for (int r = b; r < e; r++)
      sample_row(z + (size_t)r * V, V, temperature, topK, topP, uni[r], scratch.data(), scratch.data() + V, tok + r, lp + r);
  });
  return nullptr;
}

static napi_value SetThreads(napi_env env, napi_callback_info info) {
  Args a;
  if (!get_args(env, info, a, 1)) return nullptr;
  int n = num(a, 0);
  if (!a.ok) return nullptr;
  g_threads = std::max(1, std::min(n, 256));
#ifdef HAVE_CBLAS
  openblas_set_num_threads(g_threads);
#endif
  return nullptr;
}

static napi_value Info(napi_env env, napi_callback_info) {
  napi_value o, s, t, v, abi;
  CHECK(napi_create_object(env, &o));
#ifdef HAVE_CBLAS
  CHECK(napi_create_string_utf8(env, "openblas", NAPI_AUTO_LENGTH, &s));
#else
  CHECK(napi_create_string_utf8(env, "builtin-gemm", NAPI_AUTO_LENGTH, &s));
#endif
  CHECK(napi_create_int32(env, g_threads, &t));
  const char* simd = "baseline";
#if defined(__x86_64__) && defined(__GNUC__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) simd = "avx2+fma";
#endif
  CHECK(napi_create_string_utf8(env, simd, NAPI_AUTO_LENGTH, &v));
  CHECK(napi_create_int32(env, kAbiVersion, &abi));
  CHECK(napi_set_named_property(env, o, "blas", s));
  CHECK(napi_set_named_property(env, o, "threads", t));
  CHECK(napi_set_named_property(env, o, "simd", v));
  CHECK(napi_set_named_property(env, o, "abi", abi));
  return o;
}

static napi_value Init(napi_env env, napi_value exports) {
  unsigned hc = std::thread::hardware_concurrency();
  g_threads = hc == 0 ? 1 : (int)std::min(hc, 8u);
#ifdef HAVE_CBLAS
  openblas_set_num_threads(g_threads);
#endif
  struct {
    const char* name;
    napi_callback cb;
  } fns[] = {
      {"info", Info},
      {"setThreads", SetThreads},
      {"matmulXWt", MatmulXWt},
      {"matmulDyW", MatmulDyW},
      {"matmulDyTX", MatmulDyTX},
      {"attentionForward", AttentionForward},
      {"attentionBackward", AttentionBackward},
      {"logSoftmaxGather", LogSoftmaxGather},
      {"logSoftmaxGatherBackward", LogSoftmaxGatherBackward},
      {"gluForward", GluForward},
      {"gluBackward", GluBackward},
      {"adamw", AdamwUpdate},
      {"rmsnormForward", RmsnormForward},
      {"rmsnormBackward", RmsnormBackward},
      {"ropeApply", RopeApply},
      {"sumSquares", SumSquares},
      {"attentionDecode", AttentionDecode},
      {"sampleRows", SampleRows},
  };
  for (auto& f : fns) {
    napi_value fn;
    if (napi_create_function(env, f.name, NAPI_AUTO_LENGTH, f.cb, nullptr, &fn) != napi_ok) return nullptr;
    if (napi_set_named_property(env, exports, f.name, fn) != napi_ok) return nullptr;
  }
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)
