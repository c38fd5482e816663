//! Grouped-query attention of blocks of query rows against their streams' KV caches as one
//! kernel, for one or two streams (the positive and negative CFG streams of a TTS-LM step),
//! in place of candle's five to six launches per stream (scores, casts, mask, softmax, values)
//! and the concatenation of the streams' outputs. Query row `i` of a stream's `n` sits at
//! position `past + i` and sees keys `0..=past + i` (causal); scores, softmax and the weighted
//! sum are f32.

use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::{LaunchConfig, PushKernelArg};
use candle_core::cuda_backend::{CudaStorage, WrapErr};
use candle_core::{bail, CpuStorage, CustomOp3, DType, Layout, Result, Shape, Storage, Tensor};
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
extern "C" __global__ void NAME(const T* q0, const T* k0, const T* v0, const T* q1,       \
        const T* k1, const T* v1, T* out, int n0, int n1, int heads, int kv_heads,         \
        int head_dim, int total0, int total1, long long k0_head, long long k0_row,         \
        long long v0_head, long long v0_row, long long k1_head, long long k1_row,          \
        long long v1_head, long long v1_row) {                                             \
    extern __shared__ float smem[];                                                        \
    __shared__ float red[32];                                                              \
    int row = blockIdx.x, h = blockIdx.y, kvh = h / (heads / kv_heads);                   \
    int s = row >= n0;                                                                     \
    int i = s ? row - n0 : row;                                                            \
    const T* q = s ? q1 : q0;                                                              \
    int n = s ? n1 : n0, total = s ? total1 : total0;                                      \
    long long k_row = s ? k1_row : k0_row, v_row = s ? v1_row : v0_row;                    \
    const T* kb = (s ? k1 : k0) + kvh * (s ? k1_head : k0_head);                           \
    const T* vb = (s ? v1 : v0) + kvh * (s ? v1_head : v0_head);                           \
    int visible = total - n + i + 1;                                                       \
    float* qs = smem;                                                                      \
    float* sc = smem + head_dim;                                                           \
    const T* qr = q + ((long long)i * heads + h) * head_dim;                               \
    for (int d = threadIdx.x; d < head_dim; d += blockDim.x) qs[d] = LOAD(qr[d]);          \
    __syncthreads();                                                                       \
    float mx = VV_NEG_INF;                                                                 \
    for (int j = threadIdx.x; j < visible; j += blockDim.x) {                              \
        const T* kr = kb + j * k_row;                                                      \
        float sum = 0.f;                                                                   \
        for (int d = 0; d < head_dim; ++d) sum += qs[d] * LOAD(kr[d]);                     \
        sc[j] = sum;                                                                       \
        mx = fmaxf(mx, sum);                                                               \
    }                                                                                      \
    mx = block_reduce(mx, red, true);                                                      \
    float sum = 0.f;                                                                       \
    for (int j = threadIdx.x; j < visible; j += blockDim.x) {                              \
        float e = expf(sc[j] - mx);                                                        \
        sc[j] = e;                                                                         \
        sum += e;                                                                          \
    }                                                                                      \
    sum = block_reduce(sum, red, false);                                                   \
    T* o = out + ((long long)row * heads + h) * head_dim;                                  \
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

/// One stream's queries `[n, heads, hd]` (contiguous) and keys/values `[kv_heads, T, hd]`
/// (views of its cache, last dimension contiguous).
pub(crate) struct StreamQkv<'a> {
    pub q: &'a Tensor,
    pub keys: &'a Tensor,
    pub values: &'a Tensor,
}

/// Attention of one or two streams in one launch → `[n₀ + n₁, heads·hd]`, stream 0's rows first.
pub(crate) fn attention(streams: &[StreamQkv]) -> Result<Tensor> {
    let (first, second) = match streams {
        [a] => (a, None),
        [a, b] => (a, Some(b)),
        _ => bail!(
            "attention kernel: {} streams, one or two supported",
            streams.len()
        ),
    };
    let op = Attention {
        second: second
            .map(|b| {
                Ok::<_, candle_core::Error>([b.q.contiguous()?, b.keys.clone(), b.values.clone()])
            })
            .transpose()?,
    };
    first
        .q
        .contiguous()?
        .apply_op3_no_bwd(first.keys, first.values, &op)
}

/// The second stream's `[q, keys, values]`, if any (the first is the op's own inputs).
struct Attention {
    second: Option<[Tensor; 3]>,
}

/// Shape and strides of one stream: `(n, total, [k_head, k_row, v_head, v_row])`.
fn stream_shape(
    q: &Layout,
    k: &Layout,
    v: &Layout,
    heads: usize,
    hd: usize,
) -> Result<(usize, usize, [i64; 4])> {
    let (n, q_heads, q_hd) = q.shape().dims3()?;
    let (kv_heads, total, k_hd) = k.shape().dims3()?;
    let valid = q.is_contiguous()
        && q_heads == heads
        && q_hd == hd
        && v.shape().dims() == k.shape().dims()
        && k_hd == hd
        && kv_heads > 0
        && heads % kv_heads == 0
        && total >= n
        && fits(total, hd);
    if !valid {
        bail!(
            "attention kernel: q {:?}, keys {:?}, values {:?}",
            q.shape(),
            k.shape(),
            v.shape()
        );
    }
    let (ks, vs) = (k.stride(), v.stride());
    Ok((
        n,
        total,
        [ks[0] as i64, ks[1] as i64, vs[0] as i64, vs[1] as i64],
    ))
}

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
        let (_, heads, hd) = q_l.shape().dims3()?;
        let kv_heads = k_l.shape().dims3()?.0;
        let (n0, total0, strides0) = stream_shape(q_l, k_l, v_l, heads, hd)?;
        let second = self
            .second
            .as_ref()
            .map(|t| t.each_ref().map(Tensor::storage_and_layout));
        let mut cuda = Vec::with_capacity(3);
        if let Some(parts) = &second {
            for (storage, _) in parts {
                match &**storage {
                    Storage::Cuda(s) => cuda.push(s),
                    _ => bail!("attention kernel: the second stream is not on the GPU"),
                }
            }
        }
        let (n1, total1, strides1, starts1) = match &second {
            Some([(_, ql), (_, kl), (_, vl)]) => {
                if kl.shape().dims3()?.0 != kv_heads {
                    bail!("attention kernel: the streams have different KV heads");
                }
                let (n, total, strides) = stream_shape(ql, kl, vl, heads, hd)?;
                let starts = [
                    start_with_unit_stride(ql, "q")?,
                    start_with_unit_stride(kl, "keys")?,
                    start_with_unit_stride(vl, "values")?,
                ];
                (n, total, strides, starts)
            }
            None => (0, 0, strides0, [0; 3]),
        };
        let dev = q.device().clone();
        let starts0 = [
            start_with_unit_stride(q_l, "q")?,
            start_with_unit_stride(k_l, "keys")?,
            start_with_unit_stride(v_l, "values")?,
        ];
        let rows = n0 + n1;
        let ints = [
            n0 as i32,
            n1 as i32,
            heads as i32,
            kv_heads as i32,
            hd as i32,
            total0 as i32,
            total1 as i32,
        ];
        let cfg = LaunchConfig {
            grid_dim: (rows as u32, heads as u32, 1),
            block_dim: (THREADS, 1, 1),
            shared_mem_bytes: ((hd + total0.max(total1)) * std::mem::size_of::<f32>()) as u32,
        };
        let out_len = rows * heads * hd;
        macro_rules! launch {
            ($t:ty) => {{
                let (q0, k0, v0) = (
                    view!(q, $t, starts0[0]),
                    view!(k, $t, starts0[1]),
                    view!(v, $t, starts0[2]),
                );
                // Without a second stream its pointers repeat the first's (never read: n1 = 0).
                let (q1, k1, v1) = match cuda.as_slice() {
                    [qs, ks, vs] => (
                        view!(qs, $t, starts1[0]),
                        view!(ks, $t, starts1[1]),
                        view!(vs, $t, starts1[2]),
                    ),
                    _ => (
                        view!(q, $t, starts0[0]),
                        view!(k, $t, starts0[1]),
                        view!(v, $t, starts0[2]),
                    ),
                };
                let func = load_kernel!(dev, "attention", q.dtype());
                let mut b = func.builder();
                // SAFETY: every element is written by the kernel before it is read.
                let out = unsafe { dev.alloc::<$t>(out_len)? };
                b.arg(&q0)
                    .arg(&k0)
                    .arg(&v0)
                    .arg(&q1)
                    .arg(&k1)
                    .arg(&v1)
                    .arg(&out);
                for x in &ints {
                    b.arg(x);
                }
                for x in strides0.iter().chain(&strides1) {
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
        Ok((out, Shape::from((rows, heads * hd))))
    }
}
