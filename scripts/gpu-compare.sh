#!/usr/bin/env bash
# Compares CUDA builds of vibevoice-rt on one GPU machine in one session (timings from different
# machines or sessions are not comparable): for each diffusion step count, each binary runs the
# bf16 CFG-1.5 benchmark (plain, then with --breakdown), binaries interleaved, in two rounds.
#
# Usage: scripts/gpu-compare.sh NAME=BINARY [NAME=BINARY ...]
#   BINARY may be an .xz file (unpacked to a temporary file).
# Environment: OUT (output directory, default a new temporary one), STEPS ("5 20"),
#   BENCH_FRAMES (24), BENCH_RUNS (5), ROUNDS (2).
# Output: $OUT/NAME.steps-S.round-R[.breakdown].json (bench --json) and .err, and
#   $OUT/summary.txt, one line per run: name, steps, round, ttfa_ms, per_frame_ms, peak memory,
#   and the breakdown when present.
set -uo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
# shellcheck source=scripts/gpu-env.sh
source "$root/scripts/gpu-env.sh"
out=${OUT:-$(mktemp -d -t gpu-compare.XXXXXX)}
mkdir -p "$out"
[[ $# -gt 0 ]] || { echo "usage: $0 NAME=BINARY ..."; exit 2; }

add_cuda_libraries

names=()
declare -A bins
for spec in "$@"; do
    name=${spec%%=*}
    bin=${spec#*=}
    if [[ $bin == *.xz ]]; then
        bin=$(unpack_binary "$bin" "$name")
    fi
    [[ -x $bin ]] || { echo "no binary at $bin"; exit 2; }
    names+=("$name")
    bins[$name]=$bin
done

status=0
for steps in ${STEPS:-5 20}; do
    for round in $(seq 1 "${ROUNDS:-2}"); do
        for name in "${names[@]}"; do
            for mode in plain breakdown; do
                base=$out/$name.steps-$steps.round-$round
                extra=()
                if [[ $mode == breakdown ]]; then base=$base.breakdown; extra=(--breakdown); fi
                timeout 300 "${bins[$name]}" bench --random-weights --device cuda --dtype bf16 \
                    --cfg-scale 1.5 --frames "${BENCH_FRAMES:-24}" --runs "${BENCH_RUNS:-5}" \
                    --diffusion-steps "$steps" --json "${extra[@]}" >"$base.json" 2>"$base.err" \
                    || { echo "$name steps $steps round $round $mode: failed"; tail -n 5 "$base.err"; status=1; }
            done
        done
    done
done

python3 - "$out" >"$out/summary.txt" <<'PY'
import glob, json, os, sys
for path in sorted(glob.glob(os.path.join(sys.argv[1], "*.json"))):
    try:
        r = json.load(open(path))
    except Exception as e:
        print(f"{os.path.basename(path)}: no JSON ({e})")
        continue
    b = r.get("breakdown_ms") or {}
    parts = " ".join(f"{k}={v:.2f}" for k, v in b.items() if isinstance(v, (int, float)))
    print(f"{os.path.basename(path)}: ttfa {r['ttfa_ms']:.2f} per_frame {r['per_frame_ms']:.2f} "
          f"peak {r.get('peak_gpu_memory_bytes')} {parts}")
PY
cat "$out/summary.txt"
exit $status
