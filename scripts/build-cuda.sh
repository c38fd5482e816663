#!/usr/bin/env bash
# Builds the CUDA-enabled vibevoice-rt binary on a machine without a GPU or a CUDA install.
#
# - The CUDA 13.0 toolchain (nvcc, headers, cudart, cuBLAS, cuRAND, NVRTC) comes from PyPI into a
#   virtual environment (default ./cuda-venv, reused on later runs).
# - CUDA is loaded at run time: candle-core 0.11.1 is copied out of the cargo registry into
#   target/cuda/ and its cudarc feature `dynamic-linking` is switched to `dynamic-loading` (that
#   copy only; no third-party source is committed), and cudart is linked statically. The binary
#   has no CUDA library in `ldd`; it runs on the CPU where CUDA is absent and on the GPU where the
#   NVIDIA driver (libcuda) and the CUDA 13 cuBLAS/cuRAND/NVRTC libraries are on the loader path.
# - The build happens in a snapshot of the workspace (target/cuda/workspace) so the patch never
#   touches the tracked Cargo.lock; output goes to target/cuda (the CPU target/ is untouched).
#
# Usage: scripts/build-cuda.sh [--head | --rev COMMIT]   prints the path of the built binary on
#   its last line. --head builds the last commit (git HEAD) instead of the working tree, --rev
#   another commit (e.g. a baseline to compare with on the same GPU machine).
# Environment: CUDA_VENV (venv directory), PYTHON (interpreter for the venv, default python3),
#              CUDA_COMPUTE_CAP (default 80: PTX the driver JITs for Ampere and newer),
#              CARGO_BUILD_JOBS (parallel jobs, cargo's own variable).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${CUDA_VENV:-$root/cuda-venv}
python=${PYTHON:-python3}
target_dir=$root/target/cuda
snapshot=$target_dir/workspace
candle_version=0.11.1

# Exact pins: the H100 hosts run driver 580 (CUDA 13.0); cudarc 0.19.10 rejects nvcc 13.5.
packages=(
    nvidia-cuda-nvcc==13.0.88
    nvidia-nvvm==13.0.88
    nvidia-cuda-crt==13.0.88
    nvidia-cuda-runtime==13.0.96
    nvidia-cuda-cccl==13.0.85
    nvidia-cuda-nvrtc==13.0.88
    nvidia-curand==10.4.0.35
    nvidia-cublas==13.0.2.14
)

log() { printf '[build-cuda] %s\n' "$*" >&2; }

# 1. The toolchain venv (installed once; the stamp records the pinned set).
stamp=$venv/.vibevoice-rt-cuda-packages
if [[ ! -f $stamp || $(cat "$stamp") != "${packages[*]}" ]]; then
    log "installing the CUDA 13.0 toolchain from PyPI into $venv"
    [[ -x $venv/bin/python ]] || "$python" -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${packages[@]}"
    printf '%s' "${packages[*]}" >"$stamp"
else
    log "reusing the toolchain in $venv"
fi
site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
export CUDA_HOME=$site/nvidia/cu13
export CUDA_PATH=$CUDA_HOME
export PATH=$CUDA_HOME/bin:$PATH
export CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-80}
[[ -x $CUDA_HOME/bin/nvcc ]] || { log "no nvcc in $CUDA_HOME/bin"; exit 1; }
log "$(nvcc --version | tail -n 2 | head -n 1)"

# 2. Unversioned .so names for the linker and for cudarc's build script.
for lib in cublas cublasLt cudart nvrtc; do
    ln -sf "lib$lib.so.13" "$CUDA_HOME/lib/lib$lib.so"
done
ln -sf libcurand.so.10 "$CUDA_HOME/lib/libcurand.so"

# 3. Dependencies, then a candle-core copy that loads CUDA at run time.
(cd "$root" && cargo fetch --locked)
cargo_home=${CARGO_HOME:-$HOME/.cargo}
crate_file=$(ls "$cargo_home"/registry/cache/*/candle-core-$candle_version.crate | head -n 1)
patched=$target_dir/patched
candle=$patched/candle-core-$candle_version
if [[ ! -f $candle/Cargo.toml || $crate_file -nt $candle/Cargo.toml ]]; then
    log "unpacking $crate_file into $patched"
    rm -rf "$candle"
    mkdir -p "$patched"
    tar -xzf "$crate_file" -C "$patched"
    sed -i 's/"dynamic-linking",/"dynamic-loading",/' "$candle/Cargo.toml"
fi
if grep -q dynamic-linking "$candle/Cargo.toml" || ! grep -q '"dynamic-loading",' "$candle/Cargo.toml"; then
    log "could not switch cudarc to dynamic-loading in $candle/Cargo.toml"
    exit 1
fi

# 4. cudart linked statically: `-lcudart` (asked for by candle-kernels) finds this script first.
static_dir=$target_dir/cudart-static
mkdir -p "$static_dir"
printf 'INPUT(%s -lrt -ldl -lpthread)\n' "$CUDA_HOME/lib/libcudart_static.a" >"$static_dir/libcudart.so"
export LIBRARY_PATH=$static_dir${LIBRARY_PATH:+:$LIBRARY_PATH}

# 5. A snapshot of the workspace (the patch rewrites its Cargo.lock, not the tracked one). Only
# changed files are copied, so cargo's timestamp-based rebuild checks stay right.
source_dir=$root
rev=
case ${1:-} in
    --head) rev=HEAD ;;
    --rev) rev=${2:?--rev needs a commit} ;;
esac
if [[ -n $rev ]]; then
    source_dir=$target_dir/head
    rm -rf "$source_dir"
    mkdir -p "$source_dir"
    git -C "$root" archive "$rev" crates Cargo.toml Cargo.lock | tar -x -C "$source_dir"
    log "building git $rev ($(git -C "$root" rev-parse --short "$rev"))"
fi
mkdir -p "$snapshot/crates"
(cd "$source_dir" && find crates Cargo.toml Cargo.lock -type f) | while read -r file; do
    if ! cmp -s "$source_dir/$file" "$snapshot/$file"; then
        mkdir -p "$(dirname "$snapshot/$file")"
        cp "$source_dir/$file" "$snapshot/$file"
    fi
done
(cd "$snapshot" && find crates -type f) | while read -r file; do
    [[ -e $source_dir/$file ]] || rm -f "$snapshot/$file"
done
log "building (a clean build takes about 10 minutes on 2 cores)"
(cd "$snapshot" && CARGO_TARGET_DIR=$target_dir cargo build --release -p vibevoice-rt \
    --features cuda --config "patch.crates-io.candle-core.path=\"$candle\"")

binary=$target_dir/release/vibevoice-rt
# 6. No CUDA library may be linked: CUDA is loaded at run time.
if ldd "$binary" | grep -Ei 'libcuda|libcublas|libcurand|libcudart|libnvrtc'; then
    log "the binary links a CUDA library (see above); expected none"
    exit 1
fi
log "ldd shows no CUDA library"
# 7. The fused kernels the binary compiles with NVRTC at run time must compile.
LD_LIBRARY_PATH=$CUDA_HOME/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH} "$venv/bin/python" \
    "$root/scripts/check-cuda-kernels.py" "$CUDA_HOME/lib/libnvrtc.so.13" "$snapshot" >&2
echo "$binary"
