//! Grouped-query attention of a block of query rows against a stream's KV cache as one
//! kernel, in place of candle's five to six launches (scores, casts, mask, softmax, values).
//! Query row `i` of `n` sits at position `past + i` and sees keys `0..=past + i` (causal);
//! scores, softmax and the weighted sum are f32.

use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::{LaunchConfig, PushKernelArg};
use candle_core::cuda_backend::{CudaStorage, WrapErr};
use candle_core::{bail, CpuStorage, CustomOp3, DType, Layout, Result, Shape, Tensor};
use half::bf16;

use super::{load_kernel, no_cpu_fwd, start_with_unit_stride, view};

/// Threads per (row, head) block.
const THREADS: u32 = 128;
/// Largest key count whose scores fit the 48 KiB of shared memory a launch gets by default.
const MAX_KEYS: usize = 11_000;

/// One block per (query row, head): scores into shared memory, block max and sum, then one
/// thread per output dimension.
pub(super) const SOURCE: &str = r#"
__device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}
__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ float block_reduce(float v, float* red, bool is_max) {
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    v = is_max ? warp_max(v) : warp_sum(v);
    if (lane == 0) red[warp] = v;
    __syncthreads();
    v = threadIdx.x < warps ? red[threadIdx.x] : (is_max ? VV_NEG_INF : 0.f);
    if (warp == 0) v = is_max ? warp_max(v) : warp_sum(v);
    if (threadIdx.x == 0) red[0] = v;
    __syncthreads();
    float r = red[0];
    __syncthreads();
    return r;
}
#define ATTENTION(NAME, T, LOAD, STORE)                                                    \
extern "C" __global__ void NAME(const T* q, const T* k, const T* v, T* out, int n,        \
        int heads, int kv_heads, int head_dim, int total, long long k_head, long long k_row,\
        long long v_head, long long v_row) {                                               \
    extern __shared__ float smem[];                                                        \
    __shared__ float red[32];                                                              \
    int i = blockIdx.x, h = blockIdx.y, kvh = h / (heads / kv_heads);                     \
    int visible = total - n + i + 1;                                                       \
    float* qs = smem;                                                                      \
    float* sc = smem + head_dim;                                                           \
    const T* qr = q + ((long long)i * heads + h) * head_dim;                               \
    for (int d = threadIdx.x; d < head_dim; d += blockDim.x) qs[d] = LOAD(qr[d]);          \
    __syncthreads();                                                                       \
    const T* kb = k + kvh * k_head;                                                        \
    const T* vb = v + kvh * v_head;                                                        \
    float mx = VV_NEG_INF;                                                                  \
    for (int j = threadIdx.x; j < visible; j += blockDim.x) {                              \
        const T* kr = kb + j * k_row;                                                      \
        float s = 0.f;                                                                     \
        for (int d = 0; d < head_dim; ++d) s += qs[d] * LOAD(kr[d]);                       \
        sc[j] = s;                                                                         \
        mx = fmaxf(mx, s);                                                                 \
    }                                                                                      \
    mx = block_reduce(mx, red, true);                                                      \
    float sum = 0.f;                                                                       \
    for (int j = threadIdx.x; j < visible; j += blockDim.x) {                              \
        float e = expf(sc[j] - mx);                                                        \
        sc[j] = e;                                                                         \
        sum += e;                                                                          \
    }                                                                                      \
    sum = block_reduce(sum, red, false);                                                   \
    T* o = out + ((long long)i * heads + h) * head_dim;                                    \
    for (int d = threadIdx.x; d < head_dim; d += blockDim.x) {                             \
        float acc = 0.f;                                                                   \
        for (int j = 0; j < visible; ++j) acc += sc[j] * LOAD(vb[j * v_row + d]);          \
        o[d] = STORE(acc / sum);                                                           \
    }                                                                                      \
}
ATTENTION(attention_f32, float, load_f32, store_f32)
ATTENTION(attention_bf16, unsigned short, load_bf16, store_bf16)
"#;

/// Whether the kernel handles `keys` keys of width `head_dim` (shared-memory bound).
pub(crate) fn fits(keys: usize, head_dim: usize) -> bool {
    keys + head_dim <= MAX_KEYS
}

/// `q` `[n, heads, hd]` (contiguous) against `keys`/`values` `[kv_heads, T, hd]` (views of a
/// cache, last dimension contiguous) → `[n, heads·hd]`.
pub(crate) fn attention(q: &Tensor, keys: &Tensor, values: &Tensor) -> Result<Tensor> {
    q.apply_op3_no_bwd(keys, values, &Attention)
}

struct Attention;

impl CustomOp3 for Attention {
    fn name(&self) -> &'static str {
        "vv-attention"
    }

    no_cpu_fwd!("attention");

    fn cuda_fwd(
        &self,
        q: &CudaStorage,
        q_l: &Layout,
        k: &CudaStorage,
        k_l: &Layout,
        v: &CudaStorage,
        v_l: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        let (n, heads, hd) = q_l.shape().dims3()?;
        let (kv_heads, total, k_hd) = k_l.shape().dims3()?;
        let valid = q_l.is_contiguous()
            && v_l.shape().dims() == k_l.shape().dims()
            && k_hd == hd
            && kv_heads > 0
            && heads % kv_heads == 0
            && total >= n
            && fits(total, hd);
        if !valid {
            bail!(
                "attention kernel: q {:?}, keys {:?}, values {:?}",
                q_l.shape(),
                k_l.shape(),
                v_l.shape()
            );
        }
        let dev = q.device().clone();
        let starts = [
            start_with_unit_stride(q_l, "q")?,
            start_with_unit_stride(k_l, "keys")?,
            start_with_unit_stride(v_l, "values")?,
        ];
        let (ks, vs) = (k_l.stride(), v_l.stride());
        let ints = [
            n as i32,
            heads as i32,
            kv_heads as i32,
            hd as i32,
            total as i32,
        ];
        let strides = [ks[0] as i64, ks[1] as i64, vs[0] as i64, vs[1] as i64];
        let cfg = LaunchConfig {
            grid_dim: (n as u32, heads as u32, 1),
            block_dim: (THREADS, 1, 1),
            shared_mem_bytes: ((hd + total) * std::mem::size_of::<f32>()) as u32,
        };
        let out_len = n * heads * hd;
        macro_rules! launch {
            ($t:ty) => {{
                let (qv, kv, vv) = (
                    view!(q, $t, starts[0]),
                    view!(k, $t, starts[1]),
                    view!(v, $t, starts[2]),
                );
                let func = load_kernel!(dev, "attention", q.dtype());
                let mut b = func.builder();
                // SAFETY: every element is written by the kernel before it is read.
                let out = unsafe { dev.alloc::<$t>(out_len)? };
                b.arg(&qv).arg(&kv).arg(&vv).arg(&out);
                for x in &ints {
                    b.arg(x);
                }
                for x in &strides {
                    b.arg(x);
                }
                // SAFETY: the arguments match the kernel's signature; shapes checked above.
                unsafe { b.launch(cfg) }.w()?;
                CudaStorage::wrap_cuda_slice(out, dev.clone())
            }};
        }
        let out = match q.dtype() {
            DType::F32 => launch!(f32),
            DType::BF16 => launch!(bf16),
            other => bail!("attention kernel: no kernel for {other:?}"),
        };
        Ok((out, Shape::from((n, heads * hd))))
    }
}
