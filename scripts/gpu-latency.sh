#!/usr/bin/env bash
# First audio through the service against the model alone, one stream (issue 15's check), in
# one go: `bench --streams 1` (the model's first audio), then `serve --random-weights` driven by
# `loadtest --streams 1` on the same host over WebSocket v1 (text sent whole and word by word)
# and HTTP (`POST /v1/audio/speech`, streamed pcm, first byte), for several text lengths.
#
# Usage: scripts/gpu-latency.sh [BINARY]
#   BINARY defaults to .gpu/vibevoice-rt, or .gpu/vibevoice-rt.xz unpacked to a temporary file.
# Environment: OUT (output directory, default a new temporary one), DEVICE (cuda), DTYPE (bf16),
#   CHARS (text lengths, "60 384 3000 10000"), SECONDS_PER_RUN (3), REPEATS (3: a context with
#   random weights runs to the deadline, so each run of a long text gives one first audio),
#   BENCH_RUNS (5), IDLE_MS (300: rest before each run of the second bench), MAX_SLOTS (the
#   service's max_slots, 8; `auto`, the default of `serve`, calibrates every batch bucket at
#   start-up, which takes longer), MODEL_ARGS (how
#   bench and serve get the model; default random weights of the real shapes, e.g.
#   MODEL_ARGS="--model testdata/vibevoice-tiny/model --tokenizer
#   testdata/vibevoice-tiny/tokenizer/tokenizer.json --voices-dir DIR" for the tiny fixture).
# Output in $OUT: bench.json, bench-idle.json (the same with IDLE_MS of rest before each run),
#   lt-<mode>-<chars>-<n>.json/.err, stages-<mode>-<chars>-<n>.before/.after (the stage
#   histograms around each run), serve.log, latency.txt (the summary: per mode and length the
#   first audio of every context, their median, the median minus the model's, and the
#   service's mean time from the text's arrival to each stage).
set -uo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
# shellcheck source=scripts/gpu-env.sh
source "$root/scripts/gpu-env.sh"
out=${OUT:-$(mktemp -d -t gpu-latency.XXXXXX)}
mkdir -p "$out"

resolve_binary "${1:-}"
# The load generator: LOADTEST_BIN (another build, e.g. to keep the client fixed while comparing
# servers), default the binary under test.
client=${LOADTEST_BIN:-$bin}
add_cuda_libraries
device=${DEVICE:-cuda}
dtype=${DTYPE:-bf16}
read -r -a model_args <<<"${MODEL_ARGS:---random-weights --tokenizer testdata/vibevoice-tiny/tokenizer --voices-dir voices}"

status=0
# bench_one NAME [FLAGS...]: the model's first audio, one stream, into $out/NAME.json.
bench_one() {
    local name=$1
    shift
    echo "=== bench --streams 1 $*"
    timeout 300 "$bin" bench "${model_args[@]}" --device "$device" --dtype "$dtype" \
        --cfg-scale 1.5 --diffusion-steps 5 --frames 24 --runs "${BENCH_RUNS:-5}" --streams 1 \
        "$@" --json >"$out/$name.json" 2>"$out/$name.err" || { echo "bench $* failed"; status=1; }
}
bench_one bench
# The same after a rest before each run (IDLE_MS, default 300: about the gap between two of
# this script's contexts), as the service finds the device at each context.
bench_one bench-idle --idle-ms "${IDLE_MS:-300}"

port=$(free_port)
# The service's stage histograms (`vibevoice_stage_seconds`: arrival to admission, first
# window, first frame, first byte) before and after each run, so the summary shows where
# each cell's milliseconds go.
scrape_stages() {
    get /metrics 2>/dev/null | grep '^vibevoice_stage_seconds_' >"$1" || true
}
echo "=== serve ${model_args[*]}"
"$bin" serve "${model_args[@]}" --device "$device" --dtype "$dtype" --diffusion-steps 5 \
    --port "$port" \
    --max-slots "${MAX_SLOTS:-8}" --max-text-chars 20000 >"$out/serve.log" 2>&1 &
serve_pid=$!
if wait_ready "$serve_pid"; then
    for chars in ${CHARS:-60 384 3000 10000}; do
        for mode in ws ws-words http; do
            case $mode in
                ws) extra=() ;;
                ws-words) extra=(--word-by-word) ;;
                http) extra=(--http) ;;
            esac
            for n in $(seq 1 "${REPEATS:-3}"); do
                echo "=== loadtest $mode $chars characters ($n)"
                scrape_stages "$out/stages-$mode-$chars-$n.before"
                timeout 120 "$client" loadtest "http://127.0.0.1:$port" --streams 1 \
                    --seconds "${SECONDS_PER_RUN:-3}" --text-chars "$chars" "${extra[@]}" --json \
                    >"$out/lt-$mode-$chars-$n.json" 2>"$out/lt-$mode-$chars-$n.err" \
                    || { echo "loadtest $mode $chars failed"; status=1; }
                scrape_stages "$out/stages-$mode-$chars-$n.after"
            done
        done
    done
else
    echo "the service did not become ready"
    status=1
fi
kill "$serve_pid" 2>/dev/null
wait "$serve_pid" 2>/dev/null

python3 - "$out" >"$out/latency.txt" <<'PY'
import glob, json, os, sys
d = sys.argv[1]
def load(path):
    try:
        return json.load(open(path))
    except Exception as e:
        print(f"{os.path.basename(path)}: no JSON ({e})")
        return None
b = load(f"{d}/bench.json")
model = b["ttfa_ms"] if b else None
if b:
    print(f"model (bench --streams 1): first audio {model:.2f} ms, per frame {b['per_frame_ms']:.2f} ms "
          f"({b.get('device_name')}, {b.get('dtype')})")
bi = load(f"{d}/bench-idle.json")
if bi:
    print(f"model after {bi.get('idle_ms')} ms of rest before each run: first audio {bi['ttfa_ms']:.2f} ms "
          f"(runs {[round(x, 2) for x in bi['ttfa_runs_ms']]})")
print("service, one stream: mode, characters, first audio of each context ms, median, median - model ms")
runs = {}
for path in glob.glob(f"{d}/lt-*.json"):
    lt = load(path)
    if not lt:
        continue
    mode = os.path.basename(path)[3:].rsplit("-", 2)[0]
    key = (lt["text_chars"], mode)
    for l in lt["levels"]:
        runs.setdefault(key, {"ttfa": [], "errors": {}})
        if l["ttfa_p50_ms"] is not None:
            runs[key]["ttfa"].append(l["ttfa_p50_ms"])
        for code, count in l["errors"].items():
            runs[key]["errors"][code] = runs[key]["errors"].get(code, 0) + count
for (chars, mode), r in sorted(runs.items()):
    t = sorted(r["ttfa"])
    med = t[len(t) // 2] if t else None
    extra = f"{med - model:+.2f}" if (med is not None and model is not None) else "-"
    print(f"  {mode:<9} {chars:>6}  {[round(x, 2) for x in t]}  {med}  {extra}  errors {r['errors']}")

def stages(path):
    """{stage: (sum seconds, count)} of one scrape."""
    out = {}
    try:
        for line in open(path):
            name, value = line.rsplit(" ", 1)
            stage = name.split('stage="', 1)[1].split('"', 1)[0]
            sums = out.setdefault(stage, [0.0, 0.0])
            sums[0 if name.startswith("vibevoice_stage_seconds_sum") else 1] = float(value)
    except (OSError, IndexError, ValueError):
        pass
    return out
order = ["admitted", "first_window", "first_frame", "first_byte"]
cells = {}
for before in glob.glob(f"{d}/stages-*.before"):
    mode, chars, _ = os.path.basename(before)[7:-7].rsplit("-", 2)
    a, b = stages(before), stages(before[:-7] + ".after")
    # Named by the text's length as the run reported it (a text ends at a word).
    lt = load(f"{d}/lt-{os.path.basename(before)[7:-7]}.json") or {"text_chars": int(chars)}
    cell = cells.setdefault((lt["text_chars"], mode), {s: [0.0, 0.0] for s in order})
    for s in order:
        # A stage not yet observed has no series: zero.
        cell[s][0] += b.get(s, [0.0, 0.0])[0] - a.get(s, [0.0, 0.0])[0]
        cell[s][1] += b.get(s, [0.0, 0.0])[1] - a.get(s, [0.0, 0.0])[1]
if cells:
    print("service stages, mean ms from the text's arrival (vibevoice_stage_seconds), contexts:")
    print(f"  {'mode':<9} {'chars':>6}  " + "  ".join(f"{s:>12}" for s in order) + "  contexts")
    for (chars, mode), cell in sorted(cells.items()):
        means = [f"{1000 * v[0] / v[1]:12.3f}" if v[1] else f"{'-':>12}" for v in cell.values()]
        print(f"  {mode:<9} {chars:>6}  " + "  ".join(means) + f"  {int(cell['first_byte'][1])}")
PY
cat "$out/latency.txt"
exit $status
