#!/usr/bin/env bash
# Capacity of one GPU (issue 11's measurements), in one go: `bench --streams N` over a list of
# stream counts (round time, first audio, GPU memory), then the service with random weights of
# the real 0.5B shapes (`serve --random-weights`, automatic slots) driven by `loadtest` over
# WebSocket protocol v1 on the same host, with the GPU's memory sampled during the load.
#
# Usage: scripts/gpu-capacity.sh [BINARY]
#   BINARY defaults to .gpu/vibevoice-rt, or .gpu/vibevoice-rt.xz unpacked to a temporary file.
# Environment: OUT (output directory, default a new temporary one), STEPS (diffusion steps, 5),
#   STREAMS (bench stream counts, "1 8 32 64 128 192 256"), BENCH_FRAMES (24), BENCH_RUNS (3),
#   LOAD_STREAMS (loadtest levels, "1,32,64,128,192,256"), LOAD_SECONDS (20), BUFFER_MS (300),
#   MAX_SLOTS (the service's max_slots, auto).
# Output in $OUT: bench-N.json/.err, loadtest.json/.err, serve.log, info.json, metrics.txt,
#   gpu-memory.csv (MiB used, every 0.5 s), allocators.txt (the service's CUDA allocator gauges
#   from /metrics, every 2 s), capacity.txt (the summary).
set -uo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
# shellcheck source=scripts/gpu-env.sh
source "$root/scripts/gpu-env.sh"
out=${OUT:-$(mktemp -d -t gpu-capacity.XXXXXX)}
mkdir -p "$out"

resolve_binary "${1:-}"
# The load generator: LOADTEST_BIN (another build, e.g. to keep the client fixed while comparing
# servers), default the binary under test.
client=${LOADTEST_BIN:-$bin}
add_cuda_libraries

steps=${STEPS:-5}
status=0
for n in ${STREAMS:-1 8 32 64 128 192 256}; do
    echo "=== bench --streams $n"
    timeout 300 "$bin" bench --random-weights --device cuda --dtype bf16 --cfg-scale 1.5 \
        --diffusion-steps "$steps" --frames "${BENCH_FRAMES:-24}" --runs "${BENCH_RUNS:-3}" \
        --streams "$n" --json >"$out/bench-$n.json" 2>"$out/bench-$n.err" \
        || { echo "bench --streams $n failed"; tail -n 5 "$out/bench-$n.err"; status=1; }
done

port=$(free_port)
echo "=== serve --random-weights (max_slots ${MAX_SLOTS:-auto})"
"$bin" serve --random-weights --device cuda --dtype bf16 --diffusion-steps "$steps" \
    --tokenizer testdata/vibevoice-tiny/tokenizer --voices-dir voices --port "$port" \
    --max-slots "${MAX_SLOTS:-auto}" >"$out/serve.log" 2>&1 &
serve_pid=$!
if wait_ready "$serve_pid"; then
    get /api/info >"$out/info-start.json"
    nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 500 \
        >"$out/gpu-memory.csv" 2>/dev/null &
    smi_pid=$!
    while :; do
        get /metrics | awk '/^vibevoice_(cuda_|device_memory_used)/ {sub(/\{.*\}/, "", $1); printf "%s=%s ", $1, $2}'
        echo
        sleep 2
    done >"$out/allocators.txt" 2>/dev/null &
    metrics_pid=$!
    echo "=== loadtest --streams ${LOAD_STREAMS:-1,32,64,128,192,256}"
    timeout 540 "$client" loadtest "http://127.0.0.1:$port" --streams "${LOAD_STREAMS:-1,32,64,128,192,256}" \
        --seconds "${LOAD_SECONDS:-20}" --buffer-ms "${BUFFER_MS:-300}" --json \
        >"$out/loadtest.json" 2>"$out/loadtest.err" || { echo "loadtest failed"; status=1; }
    kill "$smi_pid" "$metrics_pid" 2>/dev/null
    get /api/info >"$out/info.json"
    get /metrics >"$out/metrics.txt"
else
    echo "the service did not become ready"
    status=1
fi
kill "$serve_pid" 2>/dev/null
wait "$serve_pid" 2>/dev/null
grep -iE "random weights|calibration|captured|warn|error|panick" "$out/serve.log" | tail -n 40

python3 - "$out" >"$out/capacity.txt" <<'EOF'
import glob, json, os, sys
d = sys.argv[1]
def load(path):
    try:
        return json.load(open(path))
    except Exception as e:
        print(f"{os.path.basename(path)}: no JSON ({e})")
        return None
print("bench (bf16, CFG 1.5, random weights): streams, ttfa p50/p95 ms, round p50/mean/p95 ms, "
      "peak GPU memory GB, rtf")
runs = [b for b in (load(p) for p in glob.glob(f"{d}/bench-*.json")) if b]
for b in sorted(runs, key=lambda b: b["streams"]):
    peak = b.get("peak_gpu_memory_bytes") or 0
    print(f"  {b['streams']:>4}  {b['ttfa_ms']:8.2f} {b['ttfa_p95_ms']:8.2f}  "
          f"{b['per_frame_ms']:8.2f} {b['per_frame_mean_ms']:8.2f} {b['round_p95_ms']:8.2f}  "
          f"{peak / 1e9:6.2f}  {b['real_time_factor']:.3f}  ({b.get('device_name')}, steps {b['steps']})")
info = load(f"{d}/info.json")
if info and info.get("capacity"):
    c = info["capacity"]
    print(f"service capacity: mode {c['mode']}, capacity {c['capacity']}, admitted {c['admitted']}, "
          f"refused {c['refused']}; round ms by batch {c['round_ms_by_batch']}")
lt = load(f"{d}/loadtest.json")
if lt:
    print("loadtest (WebSocket, buffer %s ms, %s s per level): streams, ttfa p50/p95/p99 ms, "
          "underruns, audio/wall min/median, errors" % (lt.get("buffer_ms"), lt.get("seconds")))
    for l in lt["levels"]:
        print(f"  {l['streams']:>4}  {l['ttfa_p50_ms']} {l['ttfa_p95_ms']} {l['ttfa_p99_ms']}  "
              f"{l['underruns']}  {l['audio_per_wall_min']} {l['audio_per_wall_median']}  {l['errors']}")
try:
    mem = [int(x) for x in open(f"{d}/gpu-memory.csv").read().split() if x.strip().isdigit()]
    if mem:
        print(f"GPU memory during the load (nvidia-smi, MiB): max {max(mem)}, last {mem[-1]}")
except OSError:
    pass
try:
    samples = [dict(kv.split("=") for kv in line.split()) for line in open(f"{d}/allocators.txt")
               if "=" in line]
    if samples:
        print("service allocators (MiB; first sample after start, max during the load, last):")
        for key in samples[0]:
            vals = [float(s[key]) / 2**20 for s in samples if key in s]
            print(f"  {key}: {vals[0]:.0f} / {max(vals):.0f} / {vals[-1]:.0f}")
except OSError:
    pass
EOF
cat "$out/capacity.txt"
exit $status
