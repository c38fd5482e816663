#!/usr/bin/env bash
# Issue 14's accuracy bar on the real shapes: are the CPU's int8 and bf16 weights as close to
# f32 as the CUDA bf16 path is? The random real-shape model (`say --random-weights`, seeded
# weights, the same on every device; EOS off, so `--max-frames-per-token` bounds the length)
# speaks one sentence per seed with the same noise on: the CPU in f32 (`--quantize none`), int8
# and bf16 weights, and CUDA in f32 and bf16. Each is compared with its own device's f32 run
# (and CUDA f32 with the CPU's, the devices' own arithmetic difference): the largest sample
# difference over the first 1, 2, 5 and 10 frames and over all, as a fraction of the f32 run's
# peak. Run it on the GPU machine (one binary, CUDA build); without a GPU only the CPU rows come.
#
# Usage: scripts/gpu-quant-errors.sh [BINARY]
#   BINARY defaults to .gpu/vibevoice-rt (or .gpu/vibevoice-rt.xz unpacked).
# Environment: OUT (output directory, default a new temporary one), SEEDS ("1 2 3"),
#   TEXT ("Hello there, this is a test."), FRAMES_PER_TOKEN (2), DEVICES ("cpu cuda": which
#   devices speak; "cuda" alone keeps a short GPU lease to the CUDA rows, the CPU rows then
#   coming from a run of this script on the CPU machine).
# Output: $OUT/<seed>-<device>-<weights>.wav and .log, and $OUT/errors.txt (the table).
set -uo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
# shellcheck source=scripts/gpu-env.sh
source "$root/scripts/gpu-env.sh"
out=${OUT:-$(mktemp -d -t gpu-quant-errors.XXXXXX)}
mkdir -p "$out"
resolve_binary "${1:-}"
add_cuda_libraries

text=${TEXT:-Hello there, this is a test.}
model=(--random-weights --tokenizer testdata/vibevoice-tiny/tokenizer --voices-dir voices
    --max-frames-per-token "${FRAMES_PER_TOKEN:-2}")
status=0
has_cuda=$("$bin" devices --json 2>/dev/null | python3 -c '
import json, sys
backends = json.load(sys.stdin)["backends"]
print("true" if any(b["backend"] == "cuda" and b["present"] for b in backends) else "false")
' 2>/dev/null || echo false)

# speak SEED NAME FLAGS...: one sentence into $out/SEED-NAME.wav.
speak() {
    local seed=$1 name=$2
    shift 2
    timeout 600 "$bin" say "${model[@]}" "$@" --seed "$seed" "$text" \
        -o "$out/$seed-$name.wav" >"$out/$seed-$name.log" 2>&1 \
        || { echo "say $name (seed $seed) failed: see $out/$seed-$name.log"; status=1; }
}
devices=" ${DEVICES:-cpu cuda} "
for seed in ${SEEDS:-1 2 3}; do
    if [[ $devices == *" cpu "* ]]; then
        speak "$seed" cpu-f32 --device cpu --quantize none
        speak "$seed" cpu-int8 --device cpu --quantize int8
        speak "$seed" cpu-bf16 --device cpu --quantize bf16
    fi
    if $has_cuda && [[ $devices == *" cuda "* ]]; then
        speak "$seed" cuda-f32 --device cuda --dtype f32
        speak "$seed" cuda-bf16 --device cuda --dtype bf16
    fi
done
$has_cuda || echo "no CUDA device: CPU rows only"

python3 - "$out" ${SEEDS:-1 2 3} >"$out/errors.txt" <<'PY'
import os, struct, sys, wave
out, seeds = sys.argv[1], sys.argv[2:]
FRAME = 3200
def load(path):
    if not os.path.exists(path):
        return None
    with wave.open(path) as w:
        data = w.readframes(w.getnframes())
    return struct.unpack("<%dh" % (len(data) // 2), data)
pairs = [("cpu-int8", "cpu-f32"), ("cpu-bf16", "cpu-f32"), ("cuda-bf16", "cuda-f32"),
         ("cuda-f32", "cpu-f32")]
print("max |difference| / peak of the reference, over the first N frames (all: the whole run)")
print(f"{'seed':>4}  {'run':<10} {'against':<9} {'1':>9} {'2':>9} {'5':>9} {'10':>9} {'all':>9}")
for seed in seeds:
    for run, ref in pairs:
        x, r = load(f"{out}/{seed}-{run}.wav"), load(f"{out}/{seed}-{ref}.wav")
        if x is None or r is None:
            continue
        n = min(len(x), len(r))
        cells = []
        for frames in (1, 2, 5, 10, None):
            m = n if frames is None else min(n, frames * FRAME)
            peak = max((abs(v) for v in r[:m]), default=0) or 1
            err = max((abs(a - b) for a, b in zip(x[:m], r[:m])), default=0)
            cells.append(f"{err / peak:9.3e}")
        print(f"{seed:>4}  {run:<10} {ref:<9} " + " ".join(cells))
PY
cat "$out/errors.txt"
exit $status
