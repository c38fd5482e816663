//! Which body the CPU matmul kernels run, chosen once at run time by the CPU's features (one
//! binary for all CPUs), the `VV_CPU_KERNELS` override, and the report that names them.

use std::sync::OnceLock;

use super::matmul::{self, Rows, Weight};

/// The environment variable that forces a kernel body: `auto` (default), `amx`, `avx512`,
/// `avx2`, `neon` or `portable`. Read once, at the kernels' first use.
pub const KERNELS_ENV: &str = "VV_CPU_KERNELS";

/// A value of [`KERNELS_ENV`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelChoice {
    /// The fastest body this CPU runs.
    Auto,
    /// AVX-512F, with AMX-BF16 tiles for the tall bf16 matmul (x86-64).
    Amx,
    /// AVX-512F, with f32 FMAs on bf16 weights for the tall matmul (x86-64).
    Avx512,
    /// AVX2 and FMA, with f32 FMAs on bf16 weights for the tall matmul (x86-64).
    Avx2,
    /// NEON (arm64).
    Neon,
    /// The plain Rust body (compiler-vectorised), on every CPU.
    Portable,
}

/// A [`KERNELS_ENV`] value that names no kernel body.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KernelChoiceError {
    #[error("unknown CPU kernels {0:?}: expected auto, amx, avx512, avx2, neon or portable")]
    Unknown(String),
}

impl KernelChoiceError {
    /// Stable machine label.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Unknown(_) => "unknown_cpu_kernels",
        }
    }
}

impl KernelChoice {
    const ALL: [Self; 6] = [
        Self::Auto,
        Self::Amx,
        Self::Avx512,
        Self::Avx2,
        Self::Neon,
        Self::Portable,
    ];

    /// The setting's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Amx => "amx",
            Self::Avx512 => "avx512",
            Self::Avx2 => "avx2",
            Self::Neon => "neon",
            Self::Portable => "portable",
        }
    }

    /// Validates a setting (case and surrounding blanks ignored).
    pub fn parse(value: &str) -> Result<Self, KernelChoiceError> {
        let value = value.trim();
        Self::ALL
            .into_iter()
            .find(|c| c.as_str().eq_ignore_ascii_case(value))
            .ok_or_else(|| KernelChoiceError::Unknown(value.to_owned()))
    }

    /// The body this choice names, if it names one.
    fn isa(self) -> Option<Isa> {
        match self {
            Self::Auto => None,
            Self::Amx => Some(Isa::Amx),
            Self::Avx512 => Some(Isa::Avx512),
            Self::Avx2 => Some(Isa::Avx2Fma),
            Self::Neon => Some(Isa::Neon),
            Self::Portable => Some(Isa::Portable),
        }
    }
}

impl std::str::FromStr for KernelChoice {
    type Err = KernelChoiceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// The kernel bodies, fastest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Isa {
    /// AVX-512F plus AMX-BF16 for the tall bf16 matmul (see `super::tall`).
    Amx,
    Avx512,
    Avx2Fma,
    Neon,
    Portable,
}

impl Isa {
    const ALL: [Self; 5] = [
        Self::Amx,
        Self::Avx512,
        Self::Avx2Fma,
        Self::Neon,
        Self::Portable,
    ];

    /// The body in use: [`KERNELS_ENV`]'s choice where this CPU runs it, else the fastest this
    /// CPU runs (decided once, then cached).
    pub(super) fn detect() -> Self {
        selected().0
    }

    /// Whether this CPU runs this body.
    pub(super) fn supported(self) -> bool {
        match self {
            #[cfg(target_arch = "x86_64")]
            Self::Amx => super::amx::usable(),
            #[cfg(target_arch = "x86_64")]
            Self::Avx512 => std::arch::is_x86_feature_detected!("avx512f"),
            #[cfg(target_arch = "x86_64")]
            Self::Avx2Fma => {
                std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
            }
            #[cfg(target_arch = "aarch64")]
            Self::Neon => std::arch::is_aarch64_feature_detected!("neon"),
            Self::Portable => true,
            #[allow(unreachable_patterns)]
            _ => false,
        }
    }

    /// Every body this CPU runs, fastest first.
    #[cfg(test)]
    pub(super) fn all_supported() -> impl Iterator<Item = Self> {
        Self::ALL.into_iter().filter(|i| i.supported())
    }

    /// The name reported for this body.
    fn name(self) -> &'static str {
        match self {
            Self::Amx => "avx512f+amx-bf16",
            Self::Avx512 => "avx512f",
            Self::Avx2Fma => "avx2+fma",
            Self::Neon => "neon",
            Self::Portable => "portable",
        }
    }

    /// Fills `dst` (`[rows of w, m]`, output-row major) with `x [m, k] · wᵀ` for the weight
    /// rows in `w` with FMAs (the AMX body's tiles serve the tall matmul, `super::tall`).
    /// Panics if this CPU lacks the body's instructions.
    pub(super) fn fill<E: Weight>(
        self,
        dst: &mut [f32],
        w: Rows<E>,
        x: &[f32],
        m: usize,
        k: usize,
    ) {
        assert!(self.supported(), "{self:?} kernel on a CPU without it");
        match self {
            // SAFETY (both): the CPU supports the body's instructions (checked just above).
            #[cfg(target_arch = "x86_64")]
            Self::Amx | Self::Avx512 => unsafe { super::matmul_x86::fill_avx512(dst, w, x, m, k) },
            #[cfg(target_arch = "x86_64")]
            Self::Avx2Fma => unsafe { super::matmul_x86::fill_avx2(dst, w, x, m, k) },
            #[cfg(target_arch = "aarch64")]
            Self::Neon => super::matmul_neon::fill(dst, w, x, m, k),
            _ => matmul::fill(dst, w, x, m, k),
        }
    }
}

/// The body in use and whether [`KERNELS_ENV`] chose it (cached).
fn selected() -> (Isa, bool) {
    static SELECTED: OnceLock<(Isa, bool)> = OnceLock::new();
    *SELECTED.get_or_init(|| {
        let value = std::env::var_os(KERNELS_ENV);
        let choice = choice_from(value.as_deref().map(|v| v.to_str().unwrap_or("\u{fffd}")));
        resolve(choice, Isa::supported)
    })
}

/// The choice a [`KERNELS_ENV`] value makes: unset or empty is `auto`; an invalid value is
/// ignored (`auto`) with a warning.
fn choice_from(value: Option<&str>) -> KernelChoice {
    match value.map(str::trim) {
        None | Some("") => KernelChoice::Auto,
        Some(v) => KernelChoice::parse(v).unwrap_or_else(|e| {
            tracing::warn!(
                code = e.code(),
                "{KERNELS_ENV}: {e}; choosing automatically"
            );
            KernelChoice::Auto
        }),
    }
}

/// The body for `choice` on a CPU that runs the bodies `supported` accepts, and whether the
/// choice forced it; a forced body the CPU lacks falls back to the automatic choice, with a
/// warning.
fn resolve(choice: KernelChoice, supported: impl Fn(Isa) -> bool) -> (Isa, bool) {
    if let Some(isa) = choice.isa() {
        if supported(isa) {
            return (isa, true);
        }
        tracing::warn!(
            "{KERNELS_ENV}={}: this CPU lacks those instructions; choosing automatically",
            choice.as_str()
        );
    }
    let auto = Isa::ALL
        .into_iter()
        .find(|&i| supported(i))
        .unwrap_or(Isa::Portable);
    (auto, false)
}

/// The CPU kernels in use, for reports such as `vibevoice-rt devices`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelReport {
    /// The body: "avx512f+amx-bf16", "avx512f", "avx2+fma", "neon" or "portable".
    pub isa: &'static str,
    /// Whether [`KERNELS_ENV`] chose it (a value other than `auto` that this CPU runs).
    pub forced: bool,
    /// The kernel of each weight format, e.g. "f32: avx512f fma", "int8: avx512f widen+fma".
    pub kernels: [&'static str; 3],
    /// The CPU's features that matter to these kernels (of avx2, fma, avx512f, avx512bf16,
    /// avx512vnni, avxvnni, amx-bf16 (granted by the OS) on x86-64; neon, dotprod on arm64),
    /// whether or not a kernel uses them.
    pub features: Vec<&'static str>,
}

/// Whether the kernels in use are SIMD bodies (AMX, AVX-512F, AVX2+FMA or NEON), not the
/// portable one (reads [`KERNELS_ENV`] if no kernel ran yet).
pub fn simd_kernels() -> bool {
    selected().0 != Isa::Portable
}

/// The CPU kernels in use (reads [`KERNELS_ENV`] if no kernel ran yet).
pub fn kernel_names() -> KernelReport {
    let (isa, forced) = selected();
    let kernels = match isa {
        Isa::Amx => [
            "f32: avx512f fma",
            "bf16: avx512f widen+fma, tall: amx-bf16 tiles (activations rounded to bf16)",
            "int8: avx512f widen+fma",
        ],
        Isa::Avx512 => [
            "f32: avx512f fma",
            "bf16: avx512f widen+fma, tall: avx512f fma (activations f32)",
            "int8: avx512f widen+fma",
        ],
        Isa::Avx2Fma => [
            "f32: avx2 fma",
            "bf16: avx2 widen+fma, tall: avx2 fma (activations f32)",
            "int8: avx2 widen+fma",
        ],
        Isa::Neon => [
            "f32: neon fma",
            "bf16: neon widen+fma",
            "int8: neon widen+fma",
        ],
        Isa::Portable => [
            "f32: portable",
            "bf16: portable widen",
            "int8: portable widen",
        ],
    };
    KernelReport {
        isa: isa.name(),
        forced,
        kernels,
        features: cpu_features(),
    }
}

/// The CPU's features that matter to these kernels (see [`KernelReport::features`]).
pub fn cpu_features() -> Vec<&'static str> {
    let mut found = Vec::new();
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        let all = [
            ("avx2", has!("avx2")),
            ("fma", has!("fma")),
            ("avx512f", has!("avx512f")),
            ("avx512bf16", has!("avx512bf16")),
            ("avx512vnni", has!("avx512vnni")),
            ("avxvnni", has!("avxvnni")),
            ("amx-bf16", super::amx::usable()),
        ];
        found.extend(all.into_iter().filter(|f| f.1).map(|f| f.0));
    }
    #[cfg(target_arch = "aarch64")]
    {
        use std::arch::is_aarch64_feature_detected as has;
        let all = [("neon", has!("neon")), ("dotprod", has!("dotprod"))];
        found.extend(all.into_iter().filter(|f| f.1).map(|f| f.0));
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_parse_and_bad_ones_are_refused() {
        assert_eq!(KernelChoice::parse("auto"), Ok(KernelChoice::Auto));
        assert_eq!(KernelChoice::parse("AMX"), Ok(KernelChoice::Amx));
        assert_eq!(KernelChoice::parse(" AVX512 "), Ok(KernelChoice::Avx512));
        assert_eq!("avx2".parse(), Ok(KernelChoice::Avx2));
        assert_eq!(KernelChoice::parse("neon"), Ok(KernelChoice::Neon));
        assert_eq!(KernelChoice::parse("portable"), Ok(KernelChoice::Portable));
        let err = KernelChoice::parse("sse9").unwrap_err();
        assert_eq!(err.code(), "unknown_cpu_kernels");
        assert!(err.to_string().contains("sse9"));
        for c in KernelChoice::ALL {
            assert_eq!(KernelChoice::parse(c.as_str()), Ok(c));
        }
    }

    #[test]
    fn unset_empty_and_invalid_values_mean_auto() {
        assert_eq!(choice_from(None), KernelChoice::Auto);
        assert_eq!(choice_from(Some(" ")), KernelChoice::Auto);
        assert_eq!(choice_from(Some("fastest")), KernelChoice::Auto);
        assert_eq!(choice_from(Some("Portable")), KernelChoice::Portable);
    }

    /// A forced body is honoured only where the CPU runs it; auto takes the fastest one.
    #[test]
    fn a_forced_body_is_used_only_where_the_cpu_runs_it() {
        let avx2_only = |i: Isa| matches!(i, Isa::Avx2Fma | Isa::Portable);
        assert_eq!(
            resolve(KernelChoice::Auto, avx2_only),
            (Isa::Avx2Fma, false)
        );
        assert_eq!(
            resolve(KernelChoice::Avx512, avx2_only),
            (Isa::Avx2Fma, false)
        );
        assert_eq!(resolve(KernelChoice::Avx2, avx2_only), (Isa::Avx2Fma, true));
        assert_eq!(
            resolve(KernelChoice::Portable, avx2_only),
            (Isa::Portable, true)
        );
        assert_eq!(
            resolve(KernelChoice::Neon, avx2_only),
            (Isa::Avx2Fma, false)
        );
        let all = |_: Isa| true;
        assert_eq!(resolve(KernelChoice::Auto, all), (Isa::Amx, false));
        assert_eq!(resolve(KernelChoice::Avx512, all), (Isa::Avx512, true));
        assert_eq!(resolve(KernelChoice::Neon, all), (Isa::Neon, true));
        let none = |i: Isa| i == Isa::Portable;
        assert_eq!(resolve(KernelChoice::Avx512, none), (Isa::Portable, false));
    }

    #[test]
    fn the_report_names_a_body_this_cpu_runs() {
        let report = kernel_names();
        let isa = Isa::ALL
            .into_iter()
            .find(|i| i.name() == report.isa)
            .unwrap();
        assert!(isa.supported());
        assert_eq!(isa, Isa::detect());
        // Run with VV_CPU_KERNELS=avx2 (or another body this CPU runs) to see it honoured.
        let forced = std::env::var(KERNELS_ENV)
            .ok()
            .map(|v| choice_from(Some(&v)));
        match forced.and_then(KernelChoice::isa).filter(|i| i.supported()) {
            Some(want) => assert_eq!((isa, report.forced), (want, true)),
            None => assert_eq!(
                (isa, report.forced),
                (resolve(KernelChoice::Auto, Isa::supported).0, false)
            ),
        }
        for (kernel, format) in report.kernels.iter().zip(["f32: ", "bf16: ", "int8: "]) {
            assert!(kernel.starts_with(format), "{kernel}");
        }
        #[cfg(target_arch = "x86_64")]
        assert_eq!(
            report.features.contains(&"avx2"),
            std::arch::is_x86_feature_detected!("avx2")
        );
        #[cfg(target_arch = "aarch64")]
        assert!(report.features.contains(&"neon"));
    }
}
