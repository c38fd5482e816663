//! Grouped-query attention of packed query rows against their streams' KV caches as one
//! kernel for any number of streams at different positions (both CFG streams of every
//! utterance of an engine round, or every utterance's text window), in place of candle's five
//! to six launches per stream (scores, casts, mask, softmax, values) and the concatenation of
//! the streams' outputs. A row at position `p` sees keys `0..=p` of its stream (causal); rows,
//! streams, positions and caches come from the forward's [`KvTable`]. Scores, softmax and the
//! weighted sum are f32.

use candle_core::cuda_backend::cudarc::driver::LaunchConfig;
use candle_core::cuda_backend::CudaStorage;
use candle_core::{bail, CpuStorage, CustomOp2, Layout, Result, Shape, Tensor};

use super::kv_table::{header_len, KvTable, TableArgs};
use super::{no_cpu_fwd, start_with_unit_stride, Launch};

/// Threads per (row, head) block.
const THREADS: u32 = 128;
/// Largest key count whose scores fit the 48 KiB of shared memory a launch gets by default.
pub(super) const MAX_KEYS: usize = 11_000;

/// One block per (head, query row), the heads of a row adjacent so that they read its
/// stream's keys and values while they are in L2: scores into shared memory (a thread per
/// key), block max and sum, then the weighted sum of the values with every warp taking every
/// `warps`-th key and each lane `head_dim / 32` dimensions, the warps' partial sums added in
/// shared memory.
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
#define ATTENTION_MAX_LANE_DIMS 4
#define ATTENTION(NAME, T, LOAD, STORE)                                                    \
extern "C" __global__ void NAME(const T* q, T* out, const long long* table, int layer,    \
        int rows, int streams, int heads, int kv_heads, int head_dim, int page) {          \
    extern __shared__ float smem[];                                                        \
    __shared__ float red[32];                                                              \
    int h = blockIdx.x, row = blockIdx.y, kvh = h / (heads / kv_heads);                    \
    int s = (int)table[row];                                                               \
    const long long* pages = table + 2 * rows + streams + 2 * table[2 * rows + s];         \
    long long head_off = ((long long)layer * kv_heads + kvh) * page * head_dim;            \
    int visible = (int)table[rows + row] + 1;                                              \
    float* qs = smem;                                                                      \
    float* sc = smem + head_dim;                                                           \
    const T* qr = q + ((long long)row * heads + h) * head_dim;                             \
    for (int d = threadIdx.x; d < head_dim; d += blockDim.x) qs[d] = LOAD(qr[d]);          \
    __syncthreads();                                                                       \
    float mx = VV_NEG_INF;                                                                 \
    for (int j = threadIdx.x; j < visible; j += blockDim.x) {                              \
        const T* kr = (const T*)pages[2 * (j / page)] + head_off                           \
            + (long long)(j % page) * head_dim;                                            \
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
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;         \
    float acc[ATTENTION_MAX_LANE_DIMS] = {0.f, 0.f, 0.f, 0.f};                             \
    for (int j = warp; j < visible; j += warps) {                                          \
        float e = sc[j];                                                                   \
        const T* vr = (const T*)pages[2 * (j / page) + 1] + head_off                       \
            + (long long)(j % page) * head_dim;                                            \
        for (int i = 0; i < ATTENTION_MAX_LANE_DIMS; ++i) {                                \
            int d = lane + 32 * i;                                                         \
            if (d < head_dim) acc[i] += e * LOAD(vr[d]);                                   \
        }                                                                                  \
    }                                                                                      \
    __syncthreads();                                                                       \
    float* part = sc;                                                                      \
    for (int i = 0; i < ATTENTION_MAX_LANE_DIMS; ++i) {                                    \
        int d = lane + 32 * i;                                                             \
        if (d < head_dim) part[warp * head_dim + d] = acc[i];                              \
    }                                                                                      \
    __syncthreads();                                                                       \
    T* o = out + ((long long)row * heads + h) * head_dim;                                  \
    for (int d = threadIdx.x; d < head_dim; d += blockDim.x) {                             \
        float total = 0.f;                                                                 \
        for (int w = 0; w < warps; ++w) total += part[w * head_dim + d];                   \
        o[d] = STORE(total / sum);                                                         \
    }                                                                                      \
}
ATTENTION(attention_f32, float, load_f32, store_f32)
ATTENTION(attention_bf16, unsigned short, load_bf16, store_bf16)
"#;

/// Warps per block.
const WARPS: usize = THREADS as usize / 32;
/// Widest head the value sum handles (four dimensions per lane).
const MAX_HEAD_DIM: usize = 128;

/// Whether the kernel handles `keys` keys of width `head_dim` (shared-memory bound).
pub fn fits(keys: usize, head_dim: usize) -> bool {
    head_dim <= MAX_HEAD_DIM && keys.max(WARPS * head_dim) + head_dim <= MAX_KEYS
}

/// Attention of the packed rotated queries `q` (`[rows, heads, hd]`, in the table's row order)
/// against layer `layer` of the streams' caches (`kv_heads` heads), reached through `kv`
/// (the rows' keys and values already appended) → `[rows, heads·hd]`.
pub fn attention(q: &Tensor, kv_heads: usize, kv: &KvTable, layer: usize) -> Result<Tensor> {
    let op = Attention {
        args: kv.args(layer),
        kv_heads,
        keys_bound: kv.keys_bound(),
    };
    q.contiguous()?.apply_op2_no_bwd(kv.table(), &op)
}

struct Attention {
    args: TableArgs,
    kv_heads: usize,
    keys_bound: usize,
}

impl CustomOp2 for Attention {
    fn name(&self) -> &'static str {
        "vv-attention"
    }

    no_cpu_fwd!("attention", _q _ql, _t _tl);

    fn cuda_fwd(
        &self,
        q: &CudaStorage,
        q_l: &Layout,
        table: &CudaStorage,
        table_l: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        let (rows, heads, hd) = q_l.shape().dims3()?;
        let kv_heads = self.kv_heads;
        let valid = q_l.is_contiguous()
            && self.args.rows == rows
            && table_l.shape().elem_count() > header_len(rows, self.args.streams)
            && self.args.page > 0
            && kv_heads > 0
            && heads % kv_heads == 0
            && fits(self.keys_bound, hd);
        // Scores, then the warps' partial sums, share the space after the query.
        let scores = self.keys_bound.max(WARPS * hd);
        if !valid {
            bail!(
                "attention kernel: q {:?}, {kv_heads} kv heads, {} rows, layer {}, {} keys",
                q_l.shape(),
                self.args.rows,
                self.args.layer,
                self.keys_bound
            );
        }
        let launch = Launch {
            name: "attention",
            cfg: LaunchConfig {
                grid_dim: (heads as u32, rows as u32, 1),
                block_dim: (THREADS, 1, 1),
                shared_mem_bytes: ((hd + scores) * std::mem::size_of::<f32>()) as u32,
            },
            inputs: &[(q, start_with_unit_stride(q_l, "q")?)],
            out_len: rows * heads * hd,
            table: Some((table, start_with_unit_stride(table_l, "table")?)),
            ints: &self.args.ints(heads, kv_heads, hd),
        };
        // SAFETY: the arguments match the kernel's signature; the table's positions and
        // buffers were checked when it was built (`KvTable`).
        let out = unsafe { launch.run() }?;
        Ok((out, Shape::from((rows, heads * hd))))
    }
}
