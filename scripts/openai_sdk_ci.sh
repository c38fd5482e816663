#!/usr/bin/env bash
# Runs the official `openai` Python SDK against a real vibevoice-rt server with the tiny fixture.
#
# Usage: scripts/openai_sdk_ci.sh [PORT]
#   PORT                 port to serve on (default: a free port)
#   VIBEVOICE_RT_BIN     server binary (default: target/debug/vibevoice-rt, built if missing)
#   OPENAI_SDK_VENV      virtual environment to create/reuse (default: target/openai-sdk-venv)
#   PYTHON               Python interpreter used to create the venv (default: python3)
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
BIN="${VIBEVOICE_RT_BIN:-target/debug/vibevoice-rt}"
VENV="${OPENAI_SDK_VENV:-target/openai-sdk-venv}"
PORT="${1:-$("$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}"
TINY=testdata/vibevoice-tiny

if [ ! -x "$BIN" ]; then
    echo "== building $BIN"
    cargo build -p vibevoice-rt
fi

echo "== venv $VENV with the openai package"
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade openai

VOICES="$(mktemp -d)"
LOG="$(mktemp)"
cp "$TINY/golden/voice_preset.pt" "$VOICES/tiny.pt"

echo "== starting $BIN serve on 127.0.0.1:$PORT"
"$BIN" serve \
    --model "$TINY/model" \
    --tokenizer "$TINY/tokenizer/tokenizer.json" \
    --voices-dir "$VOICES" \
    --device cpu \
    --host 127.0.0.1 \
    --port "$PORT" \
    >"$LOG" 2>&1 &
SERVER_PID=$!

cleanup() {
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    rm -rf "$VOICES" "$LOG"
}
trap cleanup EXIT

echo "== waiting for /ready"
if ! "$VENV/bin/python" - "$PORT" "$SERVER_PID" <<'PY'
import os, sys, time, urllib.error, urllib.request
port, pid = sys.argv[1], int(sys.argv[2])
deadline = time.time() + 300
while time.time() < deadline:
    try:
        os.kill(pid, 0)
    except OSError:
        sys.exit("server exited before becoming ready")
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=2) as r:
            if r.status == 200:
                sys.exit(0)
    except (urllib.error.URLError, OSError):
        pass
    time.sleep(0.2)
sys.exit("server not ready after 300 s")
PY
then
    echo "-- server log:"; cat "$LOG"; exit 1
fi

echo "== openai SDK check"
if ! "$VENV/bin/python" scripts/openai_sdk_check.py --base-url "http://127.0.0.1:$PORT/v1"; then
    echo "-- server log:"; cat "$LOG"; exit 1
fi
