/**
 * The engine's operators as plain loops over flat row-major arrays, each with an explicit backward
 * (llm.c style). Forward functions write their outputs (and whatever the backward needs, e.g. the
 * RMSNorm reciprocal std) into caller-owned buffers; backward functions ACCUMULATE (+=) into the input
 * gradients, so branches that fan out (residual stream, q/k/v sharing one input) sum up naturally.
 *
 * Arrays are typed Float32Array, but every function is dtype-agnostic: the gradient tests run them on
 * Float64Array (cast) so finite differences are exact enough to check every op tightly.
 *
 * The three matmul shapes of a linear layer live here too (the pure-TypeScript kernels); a faster backend
 * (native addon) may replace them, see kernels.ts.
 */

export type F = Float32Array;

// ---------------------------------------------------------------------------------------------------------
// Linear layer matmuls, weights as PyTorch nn.Linear: W [O, I] row-major.

/** y[N,O] = x[N,I] · Wᵀ (+ y when accumulate). Inner loop is a contiguous dot product; 2×4 register block. */
export function matmulXWt(y: F, x: F, w: F, N: number, I: number, O: number, accumulate: boolean): void {
  let n = 0;
  for (; n + 1 < N; n += 2) {
    const x0 = n * I;
    const x1 = x0 + I;
    let o = 0;
    for (; o + 3 < O; o += 4) {
      const w0 = o * I, w1 = w0 + I, w2 = w1 + I, w3 = w2 + I;
      let a00 = 0, a01 = 0, a02 = 0, a03 = 0, a10 = 0, a11 = 0, a12 = 0, a13 = 0;
      for (let i = 0; i < I; i++) {
        const xa = x[x0 + i], xb = x[x1 + i];
        const b0 = w[w0 + i], b1 = w[w1 + i], b2 = w[w2 + i], b3 = w[w3 + i];
        a00 += xa * b0; a01 += xa * b1; a02 += xa * b2; a03 += xa * b3;
        a10 += xb * b0; a11 += xb * b1; a12 += xb * b2; a13 += xb * b3;
      }
      const y0 = n * O + o, y1 = y0 + O;
      if (accumulate) {
        y[y0] += a00; y[y0 + 1] += a01; y[y0 + 2] += a02; y[y0 + 3] += a03;
        y[y1] += a10; y[y1 + 1] += a11; y[y1 + 2] += a12; y[y1 + 3] += a13;
      } else {
        y[y0] = a00; y[y0 + 1] = a01; y[y0 + 2] = a02; y[y0 + 3] = a03;
        y[y1] = a10; y[y1 + 1] = a11; y[y1 + 2] = a12; y[y1 + 3] = a13;
      }
    }
    for (; o < O; o++) {
      const w0 = o * I;
      let a0 = 0, a1 = 0;
      for (let i = 0; i < I; i++) {
        a0 += x[x0 + i] * w[w0 + i];
        a1 += x[x1 + i] * w[w0 + i];
      }
      if (accumulate) { y[n * O + o] += a0; y[(n + 1) * O + o] += a1; } else { y[n * O + o] = a0; y[(n + 1) * O + o] = a1; }
    }
  }
  for (; n < N; n++) {
    const x0 = n * I;
    for (let o = 0; o < O; o++) {
      const w0 = o * I;
      let a = 0;
      for (let i = 0; i < I; i++) a += x[x0 + i] * w[w0 + i];
      if (accumulate) y[n * O + o] += a; else y[n * O + o] = a;
    }
  }
}

// Transpose scratch for the backward matmuls, grown on demand and reused (one per dtype).
const scratch: { f32: [Float32Array, Float32Array]; f64: [Float64Array, Float64Array] } = {
  f32: [new Float32Array(0), new Float32Array(0)],
  f64: [new Float64Array(0), new Float64Array(0)],
};

function transposeScratch(slot: 0 | 1, like: F, n: number): F {
  if (like instanceof Float64Array) {
    if (scratch.f64[slot].length < n) scratch.f64[slot] = new Float64Array(n);
    return scratch.f64[slot] as unknown as F;
  }
  if (scratch.f32[slot].length < n) scratch.f32[slot] = new Float32Array(n);
  return scratch.f32[slot];
}

/** out[C,R] = a[R,C]ᵀ (tiled so both sides stay in cache). */
export function transpose(out: F, a: F, R: number, C: number): void {
  const TB = 32;
  for (let r0 = 0; r0 < R; r0 += TB) {
    const r1 = Math.min(R, r0 + TB);
    for (let c0 = 0; c0 < C; c0 += TB) {
      const c1 = Math.min(C, c0 + TB);
      for (let r = r0; r < r1; r++) for (let c = c0; c < c1; c++) out[c * R + r] = a[r * C + c];
    }
  }
}

/**
 * dx[N,I] (+)= dy[N,O] · W[O,I]. Computed as dy · (Wᵀ)ᵀ with the dot-product kernel above: transposing W
 * (O·I work) is cheap next to the N·O·I product and the dot kernel is ~1.6× faster than axpy loops in JS.
 */
export function matmulDyW(dx: F, dy: F, w: F, N: number, O: number, I: number, accumulate: boolean): void {
  const wt = transposeScratch(0, w, O * I);
  transpose(wt, w, O, I);
  matmulXWt(dx, dy, wt, N, O, I, accumulate);
}

/** dW[O,I] += dy[N,O]ᵀ · x[N,I], as dyᵀ · (xᵀ)ᵀ with the dot-product kernel (transposes are O(N·(O+I))). */
export function matmulDyTX(dw: F, dy: F, x: F, N: number, O: number, I: number): void {
  const dyt = transposeScratch(0, dy, N * O);
  const xt = transposeScratch(1, x, N * I);
  transpose(dyt, dy, N, O);
  transpose(xt, x, N, I);
  matmulXWt(dw, dyt, xt, O, N, I, true);
}

// ---------------------------------------------------------------------------------------------------------
// Embedding

export function embeddingForward(out: F, table: F, tokens: Int32Array, N: number, d: number): void {
  for (let n = 0; n < N; n++) {
    const t = tokens[n];
    out.set(table.subarray(t * d, t * d + d), n * d);
  }
}

export function embeddingBackward(dTable: F, dout: F, tokens: Int32Array, N: number, d: number): void {
  for (let n = 0; n < N; n++) {
    const to = tokens[n] * d;
    const o = n * d;
    for (let i = 0; i < d; i++) dTable[to + i] += dout[o + i];
  }
}

/** y[r, :] += b for each of R rows (projection bias; cheap next to the matmul, so one loop serves both paths). */
export function addBias(y: F, b: F, R: number, O: number): void {
  for (let r = 0; r < R; r++) {
    const o = r * O;
    for (let j = 0; j < O; j++) y[o + j] += b[j];
  }
}

/** db += Σ_r dy[r, :] (gradient of addBias). */
export function biasGrad(db: F, dy: F, R: number, O: number): void {
  for (let r = 0; r < R; r++) {
    const o = r * O;
    for (let j = 0; j < O; j++) db[j] += dy[o + j];
  }
}

// ---------------------------------------------------------------------------------------------------------
// Norms

/** out = x / sqrt(mean(x²) + eps) * w; rstd[n] saved for the backward. */
export function rmsnormForward(out: F, rstd: F, x: F, w: F, N: number, d: number, eps: number): void {
  for (let n = 0; n < N; n++) {
    const o = n * d;
    let ss = 0;
    for (let i = 0; i < d; i++) ss += x[o + i] * x[o + i];
    const r = 1 / Math.sqrt(ss / d + eps);
    rstd[n] = r;
    for (let i = 0; i < d; i++) out[o + i] = x[o + i] * r * w[i];
  }
}

/** dx += r·g − r³/d · x · Σ(g·x) with g = dout·w;  dw += dout · x · r. */
export function rmsnormBackward(dx: F, dw: F, dout: F, x: F, w: F, rstd: F, N: number, d: number): void {
  for (let n = 0; n < N; n++) {
    const o = n * d;
    const r = rstd[n];
    let gx = 0;
    for (let i = 0; i < d; i++) {
      const g = dout[o + i] * w[i];
      gx += g * x[o + i];
      dw[i] += dout[o + i] * x[o + i] * r;
    }
    const c = (r * r * r * gx) / d;
    for (let i = 0; i < d; i++) dx[o + i] += r * dout[o + i] * w[i] - c * x[o + i];
  }
}

/** out = (x − mean)/sqrt(var + eps) * w + b. */
export function layernormForward(out: F, mean: F, rstd: F, x: F, w: F, b: F, N: number, d: number, eps: number): void {
  for (let n = 0; n < N; n++) {
    const o = n * d;
    let s = 0;
    for (let i = 0; i < d; i++) s += x[o + i];
    const mu = s / d;
    let v = 0;
    for (let i = 0; i < d; i++) {
      const c = x[o + i] - mu;
      v += c * c;
    }
    const r = 1 / Math.sqrt(v / d + eps);
    mean[n] = mu;
    rstd[n] = r;
    for (let i = 0; i < d; i++) out[o + i] = (x[o + i] - mu) * r * w[i] + b[i];
  }
}

/** dx += r·(g − mean(g) − x̂·mean(g·x̂)), g = dout·w;  dw += dout·x̂;  db += dout. */
export function layernormBackward(dx: F, dw: F, db: F, dout: F, x: F, w: F, mean: F, rstd: F, N: number, d: number): void {
  for (let n = 0; n < N; n++) {
    const o = n * d;
    const mu = mean[n];
    const r = rstd[n];
    let sg = 0;
    let sgx = 0;
    for (let i = 0; i < d; i++) {
      const xh = (x[o + i] - mu) * r;
      const g = dout[o + i] * w[i];
      sg += g;
      sgx += g * xh;
      dw[i] += dout[o + i] * xh;
      db[i] += dout[o + i];
    }
    sg /= d;
    sgx /= d;
    for (let i = 0; i < d; i++) {
      const xh = (x[o + i] - mu) * r;
      dx[o + i] += r * (dout[o + i] * w[i] - sg - xh * sgx);
    }
  }
}

// ---------------------------------------------------------------------------------------------------------
// Rotary position embeddings (HF rotate_half convention: pairs are (i, i + D/2)).

/**
 * cos/sin tables [maxT, D/2]: angle = p · inv_freq_i with inv_freq_i = theta^(−2i/D), or the given
 * inv_freq values (after rope_scaling, see config.ropeInvFreq). Computed in float64, stored in the model dtype.
 */
export function ropeTables(maxT: number, D: number, theta: number | readonly number[], alloc: (n: number) => F): { cos: F; sin: F } {
  const half = D / 2;
  const cos = alloc(maxT * half);
  const sin = alloc(maxT * half);
  for (let i = 0; i < half; i++) {
    // Same float32 inv_freq as PyTorch's `1.0 / theta ** (arange(0, D, 2).float() / D)`.
    const invFreq = typeof theta === "number" ? Math.fround(1 / Math.fround(Math.pow(theta, Math.fround((2 * i) / D)))) : theta[i];
    for (let p = 0; p < maxT; p++) {
      const a = Math.fround(p * invFreq);
      cos[p * half + i] = Math.cos(a);
      sin[p * half + i] = Math.sin(a);
    }
  }
  return { cos, sin };
}

/**
 * In-place rotation of x [N, nHeads*D] where row n sits at position pos[n]. `sign` = +1 forward;
 * −1 applies the transpose (inverse rotation), which is exactly the backward of the forward rotation.
 */
export function ropeApply(x: F, pos: Int32Array, N: number, nHeads: number, D: number, cos: F, sin: F, sign: number): void {
  const half = D / 2;
  const rowLen = nHeads * D;
  for (let n = 0; n < N; n++) {
    const tb = pos[n] * half;
    for (let h = 0; h < nHeads; h++) {
      const o = n * rowLen + h * D;
      for (let i = 0; i < half; i++) {
        const c = cos[tb + i];
        const s = sign * sin[tb + i];
        const x1 = x[o + i];
        const x2 = x[o + half + i];
        x[o + i] = x1 * c - x2 * s;
        x[o + half + i] = x2 * c + x1 * s;
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------------------
// Causal (grouped-query) attention over full sequences, for teacher-forced scoring/training.
// q [B*T, H*D], k/v [B*T, Hkv*D] (RoPE already applied), out [B*T, H*D].
// Memory-lean (flash-attention style): the forward keeps only the log-sum-exp of each score row,
// lse [B, H, T]; the backward recomputes the probabilities, so no [B, H, T, T] tensor is stored per layer.

export function attentionForward(
  out: F, lse: F, q: F, k: F, v: F, B: number, T: number, H: number, Hkv: number, D: number, scratch: F,
): void {
  const scale = 1 / Math.sqrt(D);
  const group = H / Hkv;
  const qRow = H * D;
  const kvRow = Hkv * D;
  const S = scratch;
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
      const kh = (h / group) | 0;
      for (let t = 0; t < T; t++) {
        const qo = (b * T + t) * qRow + h * D;
        let max = -Infinity;
        for (let s = 0; s <= t; s++) {
          const ko = (b * T + s) * kvRow + kh * D;
          let dot = 0;
          for (let i = 0; i < D; i++) dot += q[qo + i] * k[ko + i];
          dot *= scale;
          S[s] = dot;
          if (dot > max) max = dot;
        }
        let sum = 0;
        for (let s = 0; s <= t; s++) {
          const e = Math.exp(S[s] - max);
          S[s] = e;
          sum += e;
        }
        const inv = 1 / sum;
        lse[(b * H + h) * T + t] = max + Math.log(sum);
        for (let i = 0; i < D; i++) out[qo + i] = 0;
        for (let s = 0; s <= t; s++) {
          const p = S[s] * inv;
          const vo = (b * T + s) * kvRow + kh * D;
          for (let i = 0; i < D; i++) out[qo + i] += p * v[vo + i];
        }
      }
    }
  }
}

/**
 * Backward of attentionForward, recomputing P[t,s] = exp(scale·q_t·k_s − lse_t). With dP = dO·vᵀ and
 * Σ_s P·dP = dO_t·out_t:  dS = P ⊙ (dP − dO_t·out_t);  dq += scale·dS·k;  dk += scale·dSᵀ·q;  dv += Pᵀ·dO.
 * dq/dk/dv accumulate.
 */
export function attentionBackward(
  dq: F, dk: F, dv: F, dout: F, out: F, lse: F, q: F, k: F, v: F, B: number, T: number, H: number, Hkv: number,
  D: number, _scratch: F,
): void {
  const scale = 1 / Math.sqrt(D);
  const group = H / Hkv;
  const qRow = H * D;
  const kvRow = Hkv * D;
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
      const kh = (h / group) | 0;
      for (let t = 0; t < T; t++) {
        const qo = (b * T + t) * qRow + h * D;
        const l = lse[(b * H + h) * T + t];
        let Dt = 0;
        for (let i = 0; i < D; i++) Dt += dout[qo + i] * out[qo + i];
        for (let s = 0; s <= t; s++) {
          const ko = (b * T + s) * kvRow + kh * D;
          let dot = 0;
          let dp = 0;
          for (let i = 0; i < D; i++) {
            dot += q[qo + i] * k[ko + i];
            dp += dout[qo + i] * v[ko + i];
          }
          const p = Math.exp(dot * scale - l);
          const ds = p * (dp - Dt) * scale;
          for (let i = 0; i < D; i++) {
            dv[ko + i] += p * dout[qo + i];
            dq[qo + i] += ds * k[ko + i];
            dk[ko + i] += ds * q[qo + i];
          }
        }
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------------------
// Activations and MLP gating

const SQRT1_2 = Math.SQRT1_2;
const INV_SQRT_2PI = 1 / Math.sqrt(2 * Math.PI);
const GELU_TANH_C = Math.sqrt(2 / Math.PI);

/** erf with |error| < 1.2e-7 (Numerical Recipes erfc, Chebyshev fit) — below float32 resolution. */
export function erf(x: number): number {
  const z = Math.abs(x);
  const t = 1 / (1 + 0.5 * z);
  const r =
    t *
    Math.exp(
      -z * z - 1.26551223 +
        t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806 + t * (0.27886807 +
          t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))),
    );
  return x >= 0 ? 1 - r : r - 1;
}

/** act(x) and act'(x) for act ∈ {silu, gelu (erf), gelu_tanh}. */
export function activation(kind: number, x: number): number {
  if (kind === 0) return x / (1 + Math.exp(-x));
  if (kind === 1) return 0.5 * x * (1 + erf(x * SQRT1_2));
  const u = GELU_TANH_C * (x + 0.044715 * x * x * x);
  return 0.5 * x * (1 + Math.tanh(u));
}

export function activationGrad(kind: number, x: number): number {
  if (kind === 0) {
    const s = 1 / (1 + Math.exp(-x));
    return s * (1 + x * (1 - s));
  }
  if (kind === 1) return 0.5 * (1 + erf(x * SQRT1_2)) + x * INV_SQRT_2PI * Math.exp(-0.5 * x * x);
  const u = GELU_TANH_C * (x + 0.044715 * x * x * x);
  const th = Math.tanh(u);
  return 0.5 * (1 + th) + 0.5 * x * (1 - th * th) * GELU_TANH_C * (1 + 3 * 0.044715 * x * x);
}

export const ACT_CODE = { silu: 0, gelu: 1, gelu_tanh: 2 } as const;

/** Gated MLP hidden: m = act(g) * u (up == null → plain MLP: m = act(g)). */
export function gluForward(m: F, g: F, u: F | null, n: number, kind: number): void {
  if (kind === 0) {
    if (u) for (let i = 0; i < n; i++) { const x = g[i]; m[i] = (x / (1 + Math.exp(-x))) * u[i]; }
    else for (let i = 0; i < n; i++) { const x = g[i]; m[i] = x / (1 + Math.exp(-x)); }
    return;
  }
  if (u) for (let i = 0; i < n; i++) m[i] = activation(kind, g[i]) * u[i];
  else for (let i = 0; i < n; i++) m[i] = activation(kind, g[i]);
}

/** dg = dm · u · act'(g) (overwrites);  du = dm · act(g) (overwrites). */
export function gluBackward(dg: F, du: F | null, dm: F, g: F, u: F | null, n: number, kind: number): void {
  if (u && du) {
    if (kind === 0) {
      for (let i = 0; i < n; i++) {
        const x = g[i];
        const s = 1 / (1 + Math.exp(-x));
        du[i] = dm[i] * x * s;
        dg[i] = dm[i] * u[i] * s * (1 + x * (1 - s));
      }
    } else {
      for (let i = 0; i < n; i++) {
        du[i] = dm[i] * activation(kind, g[i]);
        dg[i] = dm[i] * u[i] * activationGrad(kind, g[i]);
      }
    }
  } else {
    for (let i = 0; i < n; i++) dg[i] = dm[i] * activationGrad(kind, g[i]);
  }
}

// ---------------------------------------------------------------------------------------------------------
// Output head: log-softmax, per-token log-probabilities of given targets, entropy.

/**
 * In place: logits [N,V] → log-probabilities. lp[n] = logp[n, target[n]] (0 where target < 0, i.e. ignored);
 * ent[n] = −Σ p log p when ent is given.
 */
export function logSoftmaxGather(logits: F, targets: Int32Array, lp: F, ent: F | null, N: number, V: number): void {
  for (let n = 0; n < N; n++) {
    const o = n * V;
    let max = -Infinity;
    for (let j = 0; j < V; j++) if (logits[o + j] > max) max = logits[o + j];
    let sum = 0;
    for (let j = 0; j < V; j++) sum += Math.exp(logits[o + j] - max);
    const lse = max + Math.log(sum);
    let h = 0;
    for (let j = 0; j < V; j++) {
      const l = logits[o + j] - lse;
      logits[o + j] = l;
      if (ent) h -= Math.exp(l) * l;
    }
    const t = targets[n];
    lp[n] = t >= 0 ? logits[o + t] : 0;
    if (ent) ent[n] = h;
  }
}

/**
 * dlogits [N,V] (overwrites) from per-token dlogprob and dentropy:
 *   ∂lp/∂z_j = 1[j=t] − p_j;   ∂H/∂z_j = −p_j (log p_j + H).
 */
export function logSoftmaxGatherBackward(
  dlogits: F, logp: F, targets: Int32Array, dlp: F | null, dent: F | null, ent: F | null, N: number, V: number,
): void {
  for (let n = 0; n < N; n++) {
    const o = n * V;
    const t = targets[n];
    const a = dlp && t >= 0 ? dlp[n] : 0;
    const e = dent ? dent[n] : 0;
    if (a === 0 && e === 0) {
      dlogits.fill(0, o, o + V);
      continue;
    }
    const H = e !== 0 && ent ? ent[n] : 0;
    for (let j = 0; j < V; j++) {
      const l = logp[o + j];
      const p = Math.exp(l);
      dlogits[o + j] = -a * p - e * p * (l + H);
    }
    if (t >= 0) dlogits[o + t] += a;
  }
}

// ---------------------------------------------------------------------------------------------------------
// Optimizer

/** AdamW element update (moments already bias-corrected through stepSize / invSqrtBc2), see optim.ts. */
export function adamwUpdate(
  p: F, g: F, m: F, v: F, b1: number, b2: number, eps: number, shrink: number, stepSize: number, invSqrtBc2: number,
): void {
  for (let i = 0; i < p.length; i++) {
    const gi = g[i];
    const mi = b1 * m[i] + (1 - b1) * gi;
    const vi = b2 * v[i] + (1 - b2) * gi * gi;
    m[i] = mi;
    v[i] = vi;
    p[i] = p[i] * shrink - (stepSize * mi) / (Math.sqrt(vi) * invSqrtBc2 + eps);
  }
}

/** Σ g² in float64. */
export function sumSquares(g: F): number {
  let s = 0;
  for (let i = 0; i < g.length; i++) s += g[i] * g[i];
  return s;
}

/**
 * Attention of R query rows against a KV cache (generation). Row r is at position pos[r] of sequence slot[r]
 * and attends to cache positions 0..pos[r] (its own k/v already written). Cache layout: [slot, Hkv, Tc, D].
 */
export function attentionDecode(
  att: F, q: F, kc: F, vc: F, pos: Int32Array, slot: Int32Array, R: number, H: number, Hkv: number, D: number,
  Tc: number, scores: F,
): void {
  const scale = 1 / Math.sqrt(D);
  const group = H / Hkv;
  for (let r = 0; r < R; r++) {
    const P = pos[r];
    for (let hh = 0; hh < H; hh++) {
      const kh = (hh / group) | 0;
      const base = (slot[r] * Hkv + kh) * Tc * D;
      const qo = (r * H + hh) * D;
      let max = -Infinity;
      for (let s = 0; s <= P; s++) {
        const ko = base + s * D;
        let dot = 0;
        for (let i = 0; i < D; i++) dot += q[qo + i] * kc[ko + i];
        dot *= scale;
        scores[s] = dot;
        if (dot > max) max = dot;
      }
      let sum = 0;
      for (let s = 0; s <= P; s++) {
        const e = Math.exp(scores[s] - max);
        scores[s] = e;
        sum += e;
      }
      const inv = 1 / sum;
      for (let i = 0; i < D; i++) att[qo + i] = 0;
      for (let s = 0; s <= P; s++) {
        const p = scores[s] * inv;
        const vo = base + s * D;
        for (let i = 0; i < D; i++) att[qo + i] += p * vc[vo + i];
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------------------
// Sampling

/**
 * Draw one token from logits z. Returns the token and its log-probability under the untempered, untruncated
 * model distribution (what score() computes), so rollouts and re-scoring agree.
 * Top-k / top-p find a probability cut-off τ from a sorted copy (native typed-array sort, no comparator) and
 * sample among tokens with p ≥ τ; tokens tied with the cut-off are all kept.
 * `probs` and `sorted` are scratch arrays of length V; `uniform` is a draw from [0, 1).
 */
export function sampleToken(
  z: F, probs: F, sorted: F, temperature: number, topK: number, topP: number, uniform: number,
): { token: number; logprob: number } {
  const V = z.length;
  let max = -Infinity;
  let arg = 0;
  for (let j = 0; j < V; j++) if (z[j] > max) { max = z[j]; arg = j; }
  const greedy = temperature <= 0 || topK === 1;
  const invT = greedy ? 1 : 1 / temperature;
  let sum = 0;
  let total = 0;
  if (invT === 1) {
    for (let j = 0; j < V; j++) {
      const e = Math.exp(z[j] - max);
      probs[j] = e;
      sum += e;
    }
    total = sum;
  } else {
    for (let j = 0; j < V; j++) {
      sum += Math.exp(z[j] - max);
      const p = Math.exp((z[j] - max) * invT);
      probs[j] = p;
      total += p;
    }
  }
  const lse = max + Math.log(sum);
  if (greedy) return { token: arg, logprob: z[arg] - lse };
  let tau = 0;
  if ((topK > 0 && topK < V) || topP < 1) {
    sorted.set(probs);
    sorted.sort();
    let keep = topK > 0 ? Math.min(topK, V) : V;
    let kept = 0;
    for (let i = V - keep; i < V; i++) kept += sorted[i];
    if (topP < 1) {
      let c = 0;
      for (let i = V - 1; i >= V - keep; i--) {
        c += sorted[i];
        if (c >= topP * kept) {
          keep = V - i;
          break;
        }
      }
    }
    tau = sorted[V - keep];
    total = 0;
    for (let j = 0; j < V; j++) if (probs[j] >= tau) total += probs[j];
  }
  let u = uniform * total;
  let token = arg;
  for (let j = 0; j < V; j++) {
    const p = probs[j];
    if (p < tau) continue;
    token = j;
    u -= p;
    if (u < 0) break;
  }
  return { token, logprob: z[token] - lse };
}

/**
 * Sample one token per row of logits [R, V] with uniforms[r] ∈ [0, 1); writes tokens and their model
 * log-probabilities. scratch: ≥ 2·V floats.
 */
export function sampleRows(
  logits: F, R: number, V: number, temperature: number, topK: number, topP: number, uniforms: F,
  tokens: Int32Array, logprobs: F, scratch: F,
): void {
  const probs = scratch.subarray(0, V);
  const sorted = scratch.subarray(V, 2 * V);
  for (let r = 0; r < R; r++) {
    const { token, logprob } = sampleToken(logits.subarray(r * V, r * V + V), probs, sorted, temperature, topK, topP, uniforms[r]);
    tokens[r] = token;
    logprobs[r] = logprob;
  }
}
