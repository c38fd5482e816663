#!/usr/bin/env bash
# Cross-checks the arm64 (aarch64-unknown-linux-gnu) CPU kernels from an x86-64 Linux machine:
# builds vv-kernels' tests for the target (NEON bodies included) with Debian's cross linker and
# runs them under qemu-user. Installs what is missing: the Rust target (rustup), and the
# packages gcc-aarch64-linux-gnu and qemu-user (apt-get).
#
# Skips with a clear line (exit 0) when the target or the packages cannot be installed here.
# Output goes to the default target dir (cargo keeps each target's build apart).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
target=aarch64-unknown-linux-gnu
skip="skipping the arm64 cross-check"

log() { printf '[check-arm64] %s\n' "$*" >&2; }

# shellcheck source=lib/rust-target.sh
. "$root/scripts/lib/rust-target.sh"
if ! why=$(ensure_rust_target "$target"); then
    echo "$skip: $why"
    exit 0
fi

if ! command -v aarch64-linux-gnu-gcc >/dev/null 2>&1 || ! command -v qemu-aarch64 >/dev/null 2>&1; then
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "$skip: no apt-get to install gcc-aarch64-linux-gnu and qemu-user"
        exit 0
    fi
    sudo=
    if [ "$(id -u)" -ne 0 ]; then
        if ! command -v sudo >/dev/null 2>&1; then
            echo "$skip: installing gcc-aarch64-linux-gnu and qemu-user needs root"
            exit 0
        fi
        sudo="sudo -n"
    fi
    log "installing gcc-aarch64-linux-gnu and qemu-user"
    if ! { $sudo apt-get update -qq &&
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq \
            gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user >/dev/null; } >&2; then
        echo "$skip: gcc-aarch64-linux-gnu or qemu-user cannot be installed here"
        exit 0
    fi
fi

export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64 -L /usr/aarch64-linux-gnu"
export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc

log "cargo test -p vv-kernels --target $target (under qemu-aarch64)"
cd "$root"
cargo test --locked -p vv-kernels --target "$target"
echo "arm64 cross-check passed: vv-kernels tests on $target under qemu-aarch64"
