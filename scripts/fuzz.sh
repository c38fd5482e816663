#!/usr/bin/env bash
# Coverage-guided fuzzing on stable Rust: AFL++ through cargo-afl. Builds the targets of the
# fuzz/ crate (its own workspace) instrumented into target/afl (so the main target/ cache is
# never invalidated), runs each with afl-fuzz for a set time, one after the other, and reports
# per target the execs, execs/s, corpus size, crashes and hangs (from afl's fuzzer_stats).
# Exits 1 when any target found a crash (the inputs are listed; minimise one with `afl-tmin`,
# fix the bug and add the input under fuzz/regressions/<target>/).
#
# Usage: scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
#        scripts/fuzz.sh replay          # corpora + regressions through the checks, no AFL
#   SECONDS_PER_TARGET  afl-fuzz -V per target (default 60)
#   TARGET              one of fuzz/src/bin/*.rs (default: all of them)
#   FUZZ_OUT            where afl-fuzz writes its findings (default target/afl/findings)
#   FUZZ_REQUIRE=1      exit 2 when cargo-afl / AFL++ cannot be installed (default: say why and
#                       exit 0, so that machines without them skip fuzzing)
#   CARGO_AFL_VERSION   cargo-afl to install when missing (default 0.18.2)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"

if [ "${1:-}" = replay ]; then
    exec cargo test -p vv-server --test server fuzz_corpus
fi

SECONDS_PER_TARGET="${1:-60}"
shift || true
OUT="${FUZZ_OUT:-$ROOT/target/afl/findings}"
export CARGO_TARGET_DIR="$ROOT/target/afl"

unavailable() {
    echo "== fuzzing unavailable: $*" >&2
    [ "${FUZZ_REQUIRE:-0}" = 1 ] && exit 2
    exit 0
}

echo "== toolchain"
for tool in make cc; do
    command -v "$tool" >/dev/null || unavailable "$tool is missing (cargo-afl builds AFL++ with it)"
done
if ! cargo afl --version >/dev/null 2>&1; then
    cargo install cargo-afl --locked --version "${CARGO_AFL_VERSION:-0.18.2}" ||
        unavailable "cargo install cargo-afl failed"
fi
# The AFL++ runtime is built once per rustc version; "already built" is fine.
if ! config=$(cargo afl config --build 2>&1) && ! grep -q "already built" <<<"$config"; then
    echo "$config" >&2
    unavailable "cargo afl config --build failed"
fi
cargo afl --version
rustc --version

if [ $# -gt 0 ]; then
    TARGETS=("$@")
else
    TARGETS=()
    for f in fuzz/src/bin/*.rs; do TARGETS+=("$(basename "$f" .rs)"); done
fi

echo "== build (instrumented, $CARGO_TARGET_DIR)"
(cd fuzz && cargo afl build --release)

# The AFL dictionary of a target, if it has one.
dictionary() {
    case "$1" in
        ws_message | cartesia_request | elevenlabs_request | speech_request) echo fuzz/dict/protocol.dict ;;
        tokenize_chunks) echo fuzz/dict/tokenizer.dict ;;
        preset_pt | preset_safetensors) echo fuzz/dict/preset.dict ;;
    esac
}

# A value of afl's fuzzer_stats file.
stat() { awk -F' *: *' -v k="$2" '$1 == k { print $2 }' "$1/default/fuzzer_stats"; }

# Containers: no CPU frequency governor, core dumps piped elsewhere, CPUs shared with others.
export AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_NO_AFFINITY=1 AFL_NO_UI=1

mkdir -p "$OUT"
SUMMARY="$OUT/summary.tsv"
printf 'target\tseconds\texecs\texecs_per_s\tcorpus\tcrashes\thangs\tbitmap_cvg\tstability\n' >"$SUMMARY"
FOUND=0
for target in "${TARGETS[@]}"; do
    [ -f "fuzz/src/bin/$target.rs" ] || { echo "unknown target $target" >&2; exit 2; }
    dir="$OUT/$target"
    rm -rf "$dir"
    dict=$(dictionary "$target")
    echo "== $target: $SECONDS_PER_TARGET s"
    cargo afl fuzz -V "$SECONDS_PER_TARGET" -t 2000 ${dict:+-x "$dict"} \
        -i "fuzz/corpus/$target" -o "$dir" -- "$CARGO_TARGET_DIR/release/$target" \
        >"$OUT/$target.log" 2>&1 || { tail -30 "$OUT/$target.log"; exit 1; }
    execs=$(stat "$dir" execs_done)
    runtime=$(stat "$dir" run_time)
    crashes=$(stat "$dir" saved_crashes)
    hangs=$(stat "$dir" saved_hangs)
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$target" "$runtime" "$execs" \
        "$((execs / (runtime > 0 ? runtime : 1)))" "$(stat "$dir" corpus_count)" "$crashes" \
        "$hangs" "$(stat "$dir" bitmap_cvg)" "$(stat "$dir" stability)" >>"$SUMMARY"
    if [ "$crashes" != 0 ] || [ "$hangs" != 0 ]; then
        ls "$dir"/default/crashes/id:* "$dir"/default/hangs/id:* 2>/dev/null || true
    fi
    [ "$crashes" = 0 ] || FOUND=1
done

echo "== summary ($SUMMARY)"
column -t -s $'\t' "$SUMMARY"
if [ "$FOUND" = 1 ]; then
    echo "== crashes found (inputs listed above)"
    exit 1
fi
