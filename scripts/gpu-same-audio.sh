#!/usr/bin/env bash
# Do CUDA builds produce the same audio? Each binary serves the random real-shape model
# (`serve --random-weights`: EOS off) with CUDA graphs on and off, and one long request with a
# fixed seed (`POST /v1/audio/speech`, raw pcm) is spoken by each; the script prints each PCM's
# length and SHA-256 and exits non-zero unless all are identical. Use it after a change that
# must not move a sample (a kernel's addressing, a cache layout, a refactor), on one machine.
#
# Usage: scripts/gpu-same-audio.sh NAME=BINARY [NAME=BINARY ...]
#   BINARY may be an .xz file (unpacked to a temporary file).
# Environment: OUT (output directory, default a new temporary one), DEVICE (cuda), DTYPE (bf16),
#   SEED (7), SENTENCES (8: the text's length; 8 gives ~960 frames, past several KV pages),
#   GRAPHS ("true false": the TTS_CUDA_GRAPHS values to run).
# Output: $OUT/NAME.graphs-G.pcm and .log, and $OUT/same-audio.txt (the summary).
set -uo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
# shellcheck source=scripts/gpu-env.sh
source "$root/scripts/gpu-env.sh"
out=${OUT:-$(mktemp -d -t gpu-same-audio.XXXXXX)}
mkdir -p "$out"
[[ $# -gt 0 ]] || { echo "usage: $0 NAME=BINARY ..."; exit 2; }
add_cuda_libraries

text=$(python3 - "${SENTENCES:-8}" <<'PY'
import sys
words = "the quick brown fox jumps over a lazy dog while seven bright stars shine above".split()
n = int(sys.argv[1])
print(" ".join(" ".join(words[(i + j) % len(words)] for j in range(14)).capitalize() + "." for i in range(n)))
PY
)
body=$(python3 -c 'import json, sys; print(json.dumps({"model": "tts-1", "voice": "alloy", "input": sys.argv[1], "response_format": "pcm", "seed": int(sys.argv[2])}))' "$text" "${SEED:-7}")

port=$(free_port)
status=0
: >"$out/same-audio.txt"
for spec in "$@"; do
    name=${spec%%=*}
    bin=${spec#*=}
    [[ $bin == *.xz ]] && bin=$(unpack_binary "$bin" "$name")
    [[ -x $bin ]] || { echo "no binary at $bin"; exit 2; }
    for graphs in ${GRAPHS:-true false}; do
        tag=$name.graphs-$graphs
        TTS_CUDA_GRAPHS=$graphs "$bin" serve --random-weights --tokenizer testdata/vibevoice-tiny/tokenizer \
            --voices-dir voices --device "${DEVICE:-cuda}" --dtype "${DTYPE:-bf16}" --diffusion-steps 5 \
            --port "$port" --max-slots 2 --max-text-chars 20000 >"$out/$tag.log" 2>&1 &
        pid=$!
        if wait_ready "$pid"; then
            python3 - "$port" "$body" "$out/$tag.pcm" <<'PY' || status=1
import sys, urllib.request
req = urllib.request.Request(f"http://127.0.0.1:{sys.argv[1]}/v1/audio/speech", data=sys.argv[2].encode(),
                             headers={"Content-Type": "application/json"})
open(sys.argv[3], "wb").write(urllib.request.urlopen(req, timeout=600).read())
PY
        else
            echo "$tag: the service did not become ready"; status=1
        fi
        kill "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
        if [[ -s $out/$tag.pcm ]]; then
            bytes=$(stat -c %s "$out/$tag.pcm")
            echo "$tag $((bytes / 2)) samples ($((bytes / 6400)) frames) sha256 $(sha256sum "$out/$tag.pcm" | cut -c1-16)" \
                | tee -a "$out/same-audio.txt"
        fi
    done
done
if [[ $(sha256sum "$out"/*.pcm 2>/dev/null | cut -d' ' -f1 | sort -u | wc -l) -ne 1 ]]; then
    echo "DIFFERENT: not every run gave the same audio" | tee -a "$out/same-audio.txt"; status=1
else
    echo "identical: every run gave the same audio" | tee -a "$out/same-audio.txt"
fi
exit $status
