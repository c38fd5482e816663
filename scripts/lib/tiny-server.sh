# Sourced by the end-to-end scripts: a real `vibevoice-rt serve` with the tiny fixture model on
# the CPU, on a free local port, stopped and cleaned up when the calling script exits.
#
#   tiny_server_start [EXTRA SERVE FLAGS...]   sets BIN, PORT, SERVER_PID, LOG (builds BIN if
#                                              missing; BIN from VIBEVOICE_RT_BIN, default
#                                              target/debug/vibevoice-rt)
#   tiny_server_wait_ready                     polls /ready (up to 300 s); prints the log and
#                                              fails if the server exits or never gets ready

tiny_server_start() {
    BIN="${VIBEVOICE_RT_BIN:-target/debug/vibevoice-rt}"
    PORT="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    local tiny=testdata/vibevoice-tiny
    if [ ! -x "$BIN" ]; then
        echo "== building $BIN"
        cargo build -p vibevoice-rt
    fi
    TINY_VOICES="$(mktemp -d)"
    LOG="$(mktemp)"
    cp "$tiny/golden/voice_preset.pt" "$TINY_VOICES/tiny.pt"
    echo "== starting $BIN serve on 127.0.0.1:$PORT"
    "$BIN" serve \
        --model "$tiny/model" \
        --tokenizer "$tiny/tokenizer/tokenizer.json" \
        --voices-dir "$TINY_VOICES" \
        --device cpu \
        --host 127.0.0.1 \
        --port "$PORT" \
        "$@" \
        >"$LOG" 2>&1 &
    SERVER_PID=$!
    trap tiny_server_stop EXIT
}

tiny_server_stop() {
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    rm -rf "$TINY_VOICES" "$LOG"
}

tiny_server_wait_ready() {
    echo "== waiting for /ready"
    local deadline=$((SECONDS + 300))
    until curl -sf "http://127.0.0.1:$PORT/ready" >/dev/null; do
        if ! kill -0 "$SERVER_PID" 2>/dev/null; then
            echo "server exited before becoming ready:"; cat "$LOG"; return 1
        fi
        if [ "$SECONDS" -gt "$deadline" ]; then
            echo "server not ready after 300 s:"; tail -50 "$LOG"; return 1
        fi
        sleep 0.5
    done
}
