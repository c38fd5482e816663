//! Intel AMX (x86-64) for the tall kernel: detection and the tile-state grant (Linux), the
//! activations' rounding to bf16 (AVX-512-BF16), and the tile loop (inline assembly: the AMX
//! intrinsics are not stable Rust). Every tile is 16 rows × 64 bytes: A tiles 16 rows × 32
//! bf16 of activations, B tiles 16 input pairs × 16 columns of bf16 weight pairs ("VNNI"
//! layout), C tiles 16 × 16 f32. `tmm0`..`tmm3` accumulate 32 rows × 32 columns, `tmm4`/`tmm5`
//! hold two A tiles, `tmm6`/`tmm7` the panel's two B tiles; 16 rows or fewer use `tmm0`,
//! `tmm1` and `tmm4` only.
//!
//! Not used: AMX for the skinny (few-row) matmul. Measured on the 2-vCPU Xeon (bf16 weights in
//! tile order, prefetched): 2-3x faster than the FMA body at 10 rows, but 5-45% slower at 1
//! and 2 rows (the frame loop's rows), and the kernel must not depend on the row count (a
//! batch equals its streams alone); see docs/benchmarks.md.

use std::arch::asm;
use std::arch::x86_64::{
    __m256i, _mm256_mask_storeu_epi16, _mm512_cvtneps_pbh, _mm512_maskz_loadu_ps,
};
use std::sync::OnceLock;

use super::tall::{K_STEP, PANEL};

/// Rows per tile (the most AMX allows).
pub(super) const TILE_ROWS: usize = 16;
/// Bytes per tile row (the most AMX allows): 32 bf16 of A, 16 bf16 pairs of B, 16 f32 of C.
const TILE_BYTES: u16 = 64;
/// Bytes per row of a panel (32 columns of bf16 pairs).
const PANEL_STRIDE: usize = PANEL * 4;

/// Whether the CPU has AMX-BF16 and the AVX-512 parts the conversion uses, and Linux granted
/// this process the AMX tile state (asked once; other systems: never).
pub(super) fn usable() -> bool {
    static USABLE: OnceLock<bool> = OnceLock::new();
    *USABLE.get_or_init(|| {
        use std::arch::is_x86_feature_detected as has;
        let avx512 = has!("avx512f") && has!("avx512bf16") && has!("avx512bw") && has!("avx512vl");
        // CPUID.(EAX=7, ECX=0):EDX bit 22 AMX-BF16, bit 24 AMX-TILE.
        let edx = match avx512 {
            true => std::arch::x86_64::__cpuid_count(7, 0).edx,
            false => 0,
        };
        let amx = edx & (1 << 22) != 0 && edx & (1 << 24) != 0;
        let granted = amx && request_tile_state();
        if amx && !granted {
            tracing::info!("AMX present but the tile state was not granted: no AMX kernels");
        }
        granted
    })
}

/// Asks Linux for the AMX tile data state (`arch_prctl(ARCH_REQ_XCOMP_PERM,
/// XFEATURE_XTILEDATA)`), for every thread of the process.
#[cfg(target_os = "linux")]
fn request_tile_state() -> bool {
    const SYS_ARCH_PRCTL: usize = 158;
    const ARCH_REQ_XCOMP_PERM: usize = 0x1023;
    const XFEATURE_XTILEDATA: usize = 18;
    let ret: isize;
    // SAFETY: a plain system call that only changes this process's permitted xsave features.
    unsafe {
        asm!(
            "syscall",
            inlateout("rax") SYS_ARCH_PRCTL as isize => ret,
            in("rdi") ARCH_REQ_XCOMP_PERM,
            in("rsi") XFEATURE_XTILEDATA,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    ret == 0
}

#[cfg(not(target_os = "linux"))]
fn request_tile_state() -> bool {
    false
}

/// Rounds the rows of `x` (`[m, k]`) to bf16 (nearest even) into `xb` (row stride `kp`),
/// leaving the rest of each row as it was. Safety: AVX-512F/BW/VL and AVX-512-BF16;
/// `x.len() == m·k`, `xb.len() >= m·kp`, `kp >= k`.
#[target_feature(enable = "avx512f,avx512bf16,avx512bw,avx512vl")]
pub(super) unsafe fn to_bf16(x: &[f32], xb: &mut [u16], m: usize, k: usize, kp: usize) {
    assert!(x.len() == m * k && xb.len() >= m * kp && kp >= k);
    for i in 0..m {
        let (src, dst) = (x.as_ptr().add(i * k), xb.as_mut_ptr().add(i * kp));
        let mut p = 0;
        while p < k {
            let mask = ((1u32 << (k - p).min(16)) - 1) as u16;
            let v = _mm512_maskz_loadu_ps(mask, src.add(p));
            let bf16: __m256i = std::mem::transmute(_mm512_cvtneps_pbh(v));
            _mm256_mask_storeu_epi16(dst.add(p).cast(), mask, bf16);
            p += 16;
        }
    }
}

/// The tile configuration (palette 1): eight tiles of 16 rows × 64 bytes.
#[repr(C, align(64))]
struct TileConfig {
    palette: u8,
    start_row: u8,
    reserved: [u8; 14],
    bytes_per_row: [u16; 16],
    rows: [u8; 16],
}

/// The tile configuration of this thread, released (`tilerelease`) on drop so an idle thread
/// carries no AMX state.
pub(super) struct Tiles;

impl Tiles {
    /// Safety: the tile state is granted (`usable`).
    pub(super) unsafe fn configure() -> Self {
        let mut config = TileConfig {
            palette: 1,
            start_row: 0,
            reserved: [0; 14],
            bytes_per_row: [0; 16],
            rows: [0; 16],
        };
        config.bytes_per_row[..8].fill(TILE_BYTES);
        config.rows[..8].fill(TILE_ROWS as u8);
        asm!("ldtilecfg [{}]", in(reg) &config, options(nostack, readonly));
        Self
    }
}

impl Drop for Tiles {
    fn drop(&mut self) {
        // SAFETY: tiles were configured by `configure`.
        unsafe { asm!("tilerelease", options(nostack, nomem)) };
    }
}

/// Fills `out` (`[m, n]`) with `x · wᵀ` from the bf16 rows `xb` (`[⌈m/16⌉·16, kp]`, rows past
/// `m` zero) and the weight panels (`[⌈n/32⌉][kp/2][32]` pairs). Safety: the tile state is
/// granted (`usable`); lengths as described.
pub(super) unsafe fn fill_tall(
    out: &mut [f32],
    xb: &[u16],
    panels: &[u32],
    m: usize,
    kp: usize,
    n: usize,
) {
    assert!(out.len() == m * n);
    let _tiles = Tiles::configure();
    for_each_block_row(xb, panels, m, kp, n, |row, col, values| {
        out[row * n + col..][..values.len()].copy_from_slice(values)
    });
}

/// Multiplies the bf16 rows `xb` (`[⌈m/16⌉·16, kp]`, rows past `m` zero) by every panel of
/// `panels` (`n` columns, `[⌈n/32⌉][kp/2][32]` pairs), 32 rows × 32 columns at a time, panel by
/// panel, and hands each result row to `f(row, first column, values)` (one value per column of
/// the panel, at most 32). Safety: tiles configured ([`Tiles::configure`]); lengths as
/// described.
#[inline(always)]
pub(super) unsafe fn for_each_block_row(
    xb: &[u16],
    panels: &[u32],
    m: usize,
    kp: usize,
    n: usize,
    mut f: impl FnMut(usize, usize, &[f32]),
) {
    let steps = kp / K_STEP;
    let panel_len = kp / 2 * PANEL;
    assert!(kp.is_multiple_of(K_STEP));
    assert!(xb.len() >= m.div_ceil(TILE_ROWS) * TILE_ROWS * kp);
    assert!(panels.len() >= n.div_ceil(PANEL) * panel_len);
    let mut block = Block::new();
    for panel in 0..n.div_ceil(PANEL) {
        let (col, cols) = (panel * PANEL, (n - panel * PANEL).min(PANEL));
        let w = panels.as_ptr().add(panel * panel_len);
        let mut i = 0;
        while i < m {
            let rows = (m - i).min(BLOCK_ROWS);
            panel_block(xb.as_ptr().add(i * kp), kp * 2, w, steps, rows, &mut block);
            for r in 0..rows {
                f(i + r, col, &block.row(r)[..cols]);
            }
            i += rows;
        }
    }
}

/// Rows of one block (two A tiles).
const BLOCK_ROWS: usize = 2 * TILE_ROWS;

/// A block's results: 32 rows × 32 columns of f32.
#[repr(C, align(64))]
struct Block([f32; BLOCK_ROWS * PANEL]);

impl Block {
    fn new() -> Self {
        Self([0.0; BLOCK_ROWS * PANEL])
    }

    /// Row `r`'s 32 columns.
    fn row(&self, r: usize) -> &[f32] {
        &self.0[r * PANEL..(r + 1) * PANEL]
    }
}

/// `rows` (at most 32) bf16 rows from `a` (row stride `a_stride` bytes; whole tiles readable)
/// times one panel `w`, over `steps` steps of 32 inputs, into `c`. Safety: tiles configured
/// ([`Tiles::configure`]); the pointers cover what the tile loads read.
#[inline(always)]
unsafe fn panel_block(
    a: *const u16,
    a_stride: usize,
    w: *const u32,
    steps: usize,
    rows: usize,
    c: &mut Block,
) {
    match rows > TILE_ROWS {
        true => block_32(a, a_stride, w, steps, c),
        false => block_16(a, a_stride, w, steps, c),
    }
}

/// 32 rows from `a` (row stride `a_stride` bytes) times one panel `w`, over `steps` steps of
/// 32 inputs, into `c` (rows of 32).
#[inline(always)]
unsafe fn block_32(a: *const u16, a_stride: usize, w: *const u32, steps: usize, c: &mut Block) {
    asm!(
        "tilezero tmm0",
        "tilezero tmm1",
        "tilezero tmm2",
        "tilezero tmm3",
        options(nostack, nomem)
    );
    let a_low = a.add(TILE_ROWS * a_stride / 2);
    for s in 0..steps {
        asm!(
            "tileloadd tmm4, [{a} + {sa}*1]",
            "tileloadd tmm5, [{al} + {sa}*1]",
            "tileloadd tmm6, [{w} + {sw}*1]",
            "tileloadd tmm7, [{w} + {sw}*1 + 64]",
            "tdpbf16ps tmm0, tmm4, tmm6",
            "tdpbf16ps tmm1, tmm4, tmm7",
            "tdpbf16ps tmm2, tmm5, tmm6",
            "tdpbf16ps tmm3, tmm5, tmm7",
            a = in(reg) a.add(s * K_STEP),
            al = in(reg) a_low.add(s * K_STEP),
            w = in(reg) w.add(s * K_STEP / 2 * PANEL),
            sa = in(reg) a_stride,
            sw = in(reg) PANEL_STRIDE,
            options(nostack, readonly),
        );
    }
    let p = c.0.as_mut_ptr();
    asm!(
        "tilestored [{c} + {s}*1], tmm0",
        "tilestored [{c} + {s}*1 + 64], tmm1",
        "tilestored [{cl} + {s}*1], tmm2",
        "tilestored [{cl} + {s}*1 + 64], tmm3",
        c = in(reg) p,
        cl = in(reg) p.add(TILE_ROWS * PANEL),
        s = in(reg) PANEL_STRIDE,
        options(nostack),
    );
}

/// [`block_32`] for a block of at most 16 rows (one A tile).
#[inline(always)]
unsafe fn block_16(a: *const u16, a_stride: usize, w: *const u32, steps: usize, c: &mut Block) {
    asm!("tilezero tmm0", "tilezero tmm1", options(nostack, nomem));
    for s in 0..steps {
        asm!(
            "tileloadd tmm4, [{a} + {sa}*1]",
            "tileloadd tmm6, [{w} + {sw}*1]",
            "tileloadd tmm7, [{w} + {sw}*1 + 64]",
            "tdpbf16ps tmm0, tmm4, tmm6",
            "tdpbf16ps tmm1, tmm4, tmm7",
            a = in(reg) a.add(s * K_STEP),
            w = in(reg) w.add(s * K_STEP / 2 * PANEL),
            sa = in(reg) a_stride,
            sw = in(reg) PANEL_STRIDE,
            options(nostack, readonly),
        );
    }
    asm!(
        "tilestored [{c} + {s}*1], tmm0",
        "tilestored [{c} + {s}*1 + 64], tmm1",
        c = in(reg) c.0.as_mut_ptr(),
        s = in(reg) PANEL_STRIDE,
        options(nostack),
    );
}
