//! A Qwen2 layer's RoPE and KV-cache append as one kernel for any number of streams: it reads the
//! fused q/k/v projection, rotates the queries into a packed output and writes the rotated keys
//! and the values straight into each stream's cache buffers at its next positions, in place of
//! candle's per-stream rotation, two transposed copies and two cache writes (about six
//! launches per stream and layer).

use candle_core::cuda_backend::cudarc::driver::LaunchConfig;
use candle_core::cuda_backend::CudaStorage;
use candle_core::{bail, CpuStorage, CustomOp3, Layout, Result, Shape, Storage, Tensor};

use super::kv_table::{KvTable, TableArgs};
use super::{no_cpu_fwd, start_with_unit_stride, Launch};

/// One thread per (row, head slot, pair `j`/`j + hd/2`). Row `r` belongs to stream
/// `table[r]` and sits at position `table[rows + r]`; slots are the `heads` queries, the
/// `kv_heads` keys, then the values. Position `p` lives in the stream's page `p / page`, a
/// buffer `[layers, kv_heads, page, hd]` at the table's address, at offset `p % page`.
/// Rotation (`rotate_half` convention) is computed in f32 from the cos/sin tables
/// `[positions, hd/2]` of the activation dtype.
pub(super) const SOURCE: &str = r#"
#define ROPE_APPEND(NAME, T, LOAD, STORE)                                                  \
extern "C" __global__ void NAME(const T* qkv, const T* cos_t, const T* sin_t, T* q_out,  \
        const long long* table, int layer, int rows, int streams, int heads, int kv_heads, \
        int half, int page) {                                                              \
    int slots = heads + 2 * kv_heads;                                                      \
    long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x;                      \
    if (idx >= (long long)rows * slots * half) return;                                     \
    int j = idx % half;                                                                    \
    long long rest = idx / half;                                                           \
    int slot = rest % slots, row = rest / slots;                                           \
    int s = (int)table[row];                                                               \
    long long p = table[rows + row];                                                       \
    const T* x = qkv + ((long long)row * slots + slot) * 2 * half;                         \
    float a = LOAD(x[j]), b = LOAD(x[j + half]);                                           \
    T* dst;                                                                                \
    if (slot < heads) {                                                                    \
        dst = q_out + ((long long)row * heads + slot) * 2 * half;                          \
    } else {                                                                               \
        int value = slot >= heads + kv_heads;                                              \
        int h = slot - heads - value * kv_heads;                                           \
        const long long* pages = table + 2 * rows + streams + 2 * table[2 * rows + s];     \
        T* buffer = (T*)pages[2 * (p / page) + value];                                     \
        dst = buffer + (((long long)layer * kv_heads + h) * page + p % page) * 2 * half;   \
    }                                                                                      \
    if (slot < heads + kv_heads) {                                                         \
        float c = LOAD(cos_t[p * half + j]), sn = LOAD(sin_t[p * half + j]);               \
        float ra = a * c - b * sn, rb = b * c + a * sn;                                    \
        a = ra;                                                                            \
        b = rb;                                                                            \
    }                                                                                      \
    dst[j] = STORE(a);                                                                     \
    dst[j + half] = STORE(b);                                                              \
}
ROPE_APPEND(rope_append_f32, float, load_f32, store_f32)
ROPE_APPEND(rope_append_bf16, unsigned short, load_bf16, store_bf16)
"#;

/// Rotates the queries of `qkv` (`[rows, heads + 2·kv_heads, hd]`, in the table's row order)
/// into a new `[rows, heads, hd]`, and writes the rotated keys and the values of each row into
/// layer `layer` of its stream's cache at its position, through `kv` (`cos`/`sin`: the whole
/// RoPE tables `[positions, hd/2]`, covering every position written).
pub fn rope_append(
    qkv: &Tensor,
    cos: &Tensor,
    sin: &Tensor,
    heads: usize,
    kv: &KvTable,
    layer: usize,
) -> Result<Tensor> {
    let op = RopeAppend {
        heads,
        args: kv.args(layer),
        table: kv.table().clone(),
    };
    qkv.contiguous()?
        .apply_op3_no_bwd(&cos.contiguous()?, &sin.contiguous()?, &op)
}

struct RopeAppend {
    heads: usize,
    args: TableArgs,
    table: Tensor,
}

impl CustomOp3 for RopeAppend {
    fn name(&self) -> &'static str {
        "vv-rope-append"
    }

    no_cpu_fwd!("rope-append", _a _al, _b _bl, _c _cl);

    fn cuda_fwd(
        &self,
        qkv: &CudaStorage,
        qkv_l: &Layout,
        cos: &CudaStorage,
        cos_l: &Layout,
        sin: &CudaStorage,
        sin_l: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        let heads = self.heads;
        let (rows, slots, hd) = qkv_l.shape().dims3()?;
        let half = cos_l.shape().dims2()?.1;
        let kv_heads = slots.saturating_sub(heads) / 2;
        let valid = qkv_l.is_contiguous()
            && kv_heads > 0
            && slots == heads + 2 * kv_heads
            && hd == 2 * half
            && sin_l.shape() == cos_l.shape()
            && self.args.rows == rows;
        if !valid {
            bail!(
                "rope-append kernel: qkv {:?} with {heads} heads, tables {:?}, {} rows",
                qkv_l.shape(),
                cos_l.shape(),
                self.args.rows
            );
        }
        let (table, table_l) = self.table.storage_and_layout();
        let Storage::Cuda(table) = &*table else {
            bail!("rope-append kernel: the KV table is not on the GPU");
        };
        let inputs = [
            (qkv, start_with_unit_stride(qkv_l, "qkv")?),
            (cos, start_with_unit_stride(cos_l, "cos")?),
            (sin, start_with_unit_stride(sin_l, "sin")?),
        ];
        let launch = Launch {
            name: "rope_append",
            cfg: LaunchConfig::for_num_elems((rows * slots * half) as u32),
            inputs: &inputs,
            out_len: rows * heads * hd,
            table: Some((table, start_with_unit_stride(table_l, "table")?)),
            ints: &self.args.ints(heads, kv_heads, half),
        };
        // SAFETY: the arguments match the kernel's signature; the table was built from caches
        // with room reserved for these rows (`KvTable`).
        let out = unsafe { launch.run() }?;
        Ok((out, Shape::from((rows, heads, hd))))
    }
}
