#!/usr/bin/env bash
# Type-checks the Metal build for Apple Silicon from any machine: `cargo check` of the whole
# binary (device layer, model, engine, server, CLI, and every dependency) with `--features metal`
# for the target aarch64-apple-darwin. Linking and running need a Mac; checking does not.
#
# One dependency compiles C for the target in its build script: ring (TLS for model downloads,
# through hf-hub -> ureq -> rustls). Compiling that C for macOS needs Apple's toolchain, which
# Linux lacks; and `cargo check` never links, so the objects would never be used. The check
# therefore gives the target's C compiler and archiver as stand-ins that write empty outputs:
# every Rust line is still type-checked, only ring's C code for macOS is not compiled.
#
# Skips with a clear line (exit 0) when the target cannot be installed here.
# Output goes to target/ (CARGO_TARGET_DIR overrides it), beside the host build: the target's
# own crates land in target/aarch64-apple-darwin, and the build scripts and proc-macros, which
# run on this machine, are the host build's own where their features match (cold CI time).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
target=aarch64-apple-darwin
skip="skipping the Metal type-check: the $target target cannot be installed here"

log() { printf '[check-metal] %s\n' "$*" >&2; }

# shellcheck source=lib/rust-target.sh
. "$root/scripts/lib/rust-target.sh"
if ! why=$(ensure_rust_target "$target"); then
    echo "$skip ($why)"
    exit 0
fi

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$root/target}

# Stand-ins for the target's C compiler and archiver: they create each output file empty.
stubs=$CARGO_TARGET_DIR/$target/c-stubs
mkdir -p "$stubs"
cat >"$stubs/cc" <<'EOF'
#!/bin/sh
# Stand-in C compiler for `cargo check` (nothing is linked): writes the -o file empty.
out=
while [ $# -gt 0 ]; do
    case $1 in
        -o) out=$2; shift ;;
        -o*) out=${1#-o} ;;
    esac
    shift
done
[ -z "$out" ] || : >"$out"
EOF
cat >"$stubs/ar" <<'EOF'
#!/bin/sh
# Stand-in archiver for `cargo check` (nothing is linked): writes the .a file empty.
for arg in "$@"; do
    case $arg in *.a) : >"$arg"; exit 0 ;; esac
done
EOF
chmod +x "$stubs/cc" "$stubs/ar"
export CC_aarch64_apple_darwin=$stubs/cc
export AR_aarch64_apple_darwin=$stubs/ar

log "cargo check --target $target --features metal -p vibevoice-rt"
cd "$root"
cargo check --locked --target "$target" --features metal -p vibevoice-rt
echo "Metal type-check passed: vibevoice-rt and every crate it uses, --features metal, $target"
