#!/usr/bin/env bash
# Browser check of the web page (GET /) against a real server on the tiny fixture model.
#
# Starts `vibevoice-rt serve`, opens /?autotest=1 in headless Chromium and drives it over the
# DevTools protocol on a pipe (--remote-debugging-pipe: nothing but bash and Chromium needed),
# until the page reports (in #status) that it loaded the voices, connected to /v1/tts/stream,
# received audio frames and measured the time to first audio. Exit status 0 on success.
#
# Environment: VV_BIN (default: target/debug/vibevoice-rt, (re)built with cargo first),
# CHROMIUM (default: chromium, chromium-browser, google-chrome), PORT (default: a free port),
# TIMEOUT_SECS (default 120). CI installs Chromium with `apt-get install -y chromium`.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
TINY=$ROOT/testdata/vibevoice-tiny
TIMEOUT_SECS=${TIMEOUT_SECS:-120}

say() { printf 'browser_check: %s\n' "$*" >&2; }
die() { say "FAIL: $*"; exit 1; }

CHROMIUM=${CHROMIUM:-$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)}
[ -n "$CHROMIUM" ] || die "no Chromium found (apt-get install -y chromium, or set CHROMIUM)"
if [ -z "${VV_BIN:-}" ]; then
    say "building vibevoice-rt (set VV_BIN to use a built binary as is)"
    cargo build -p vibevoice-rt --bin vibevoice-rt
    VV_BIN=$ROOT/target/debug/vibevoice-rt
fi
[ -x "$VV_BIN" ] || die "$VV_BIN is not an executable"

WORK=$(mktemp -d)
SERVER_PID=
CHROME_PID=
# Keeps the check's exit status: Chromium's helper processes may still be writing its profile
# when the browser is killed, so removing the work directory is retried, and a directory that
# cannot be removed is reported, never turned into a failure of the check.
cleanup() {
    local status=$?
    [ -n "$CHROME_PID" ] && kill "$CHROME_PID" 2>/dev/null || true
    [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null || true
    wait 2>/dev/null || true
    for _ in 1 2 3 4 5 6 7 8 9 10; do
        rm -rf "$WORK" 2>/dev/null && break
        sleep 0.5
    done
    [ ! -e "$WORK" ] || say "could not remove $WORK"
    exit "$status"
}
trap cleanup EXIT

diagnose() {
    say "server log (tail):"
    tail -n 20 "$WORK/server.log" >&2 || true
    say "chromium log (tail):"
    grep -v 'dbus' "$WORK/chromium.log" | tail -n 10 >&2 || true
}

# A TCP port nobody listens on.
free_port() {
    local p
    for _ in $(seq 1 50); do
        p=$((20000 + RANDOM % 40000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            echo "$p"
            return 0
        fi
    done
    return 1
}

# Whether GET $1 answers 200.
http_ok() {
    local status
    exec 3<>"/dev/tcp/127.0.0.1/$PORT" || return 1
    printf 'GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' "$1" >&3
    IFS= read -r -t 5 status <&3 || true
    exec 3<&- 3>&-
    [[ "$status" == *" 200 "* ]]
}

PORT=${PORT:-$(free_port)} || die "no free port"
mkdir -p "$WORK/voices" "$WORK/profile"
cp "$TINY/golden/voice_preset.pt" "$WORK/voices/tiny.pt"

say "starting the server on 127.0.0.1:$PORT"
"$VV_BIN" serve --model "$TINY/model" --tokenizer "$TINY/tokenizer/tokenizer.json" \
    --voices-dir "$WORK/voices" --device cpu --host 127.0.0.1 --port "$PORT" \
    >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
deadline=$((SECONDS + TIMEOUT_SECS))
until http_ok /ready 2>/dev/null; do
    kill -0 "$SERVER_PID" 2>/dev/null || { diagnose; die "the server exited"; }
    [ "$SECONDS" -lt "$deadline" ] || { diagnose; die "the server was not ready within ${TIMEOUT_SECS} s"; }
    sleep 0.2
done
http_ok / || { diagnose; die "GET / did not answer 200"; }

# DevTools protocol over a pipe: commands on fd 3 of Chromium, replies on fd 4, each message
# NUL-terminated JSON.
mkfifo "$WORK/cdp-in" "$WORK/cdp-out"
"$CHROMIUM" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --autoplay-policy=no-user-gesture-required --user-data-dir="$WORK/profile" \
    --remote-debugging-pipe about:blank \
    3<"$WORK/cdp-in" 4>"$WORK/cdp-out" >"$WORK/chromium.log" 2>&1 &
CHROME_PID=$!
exec 5>"$WORK/cdp-in" 6<"$WORK/cdp-out"

NEXT_ID=0
# Sends method $1 with params $2 (in session $3 if given) and prints the reply.
cdp() {
    NEXT_ID=$((NEXT_ID + 1))
    local session=${3:+\"sessionId\":\"$3\",} msg
    printf '{"id":%d,%s"method":"%s","params":%s}\0' "$NEXT_ID" "$session" "$1" "$2" >&5
    while IFS= read -r -d '' -t 30 msg <&6; do
        case "$msg" in *"\"id\":$NEXT_ID,"*) printf '%s\n' "$msg"; return 0 ;; esac
    done
    return 1
}
field() { sed -n "s/.*\"$1\":\"\\([^\"]*\\)\".*/\\1/p"; }
# Evaluates the JS expression $1 (no double quotes) in the page; prints the string it returns.
page_eval() {
    cdp Runtime.evaluate "{\"expression\":\"$1\",\"returnByValue\":true}" "$SESSION" |
        sed -n 's/.*"value":"\(.*\)"}},"sessionId".*/\1/p' | sed 's/\\"/"/g; s/\\n/\n/g'
}

URL="http://127.0.0.1:$PORT/?autotest=1"
TARGET=$(cdp Target.createTarget "{\"url\":\"$URL\"}" | field targetId) || true
[ -n "$TARGET" ] || { diagnose; die "Chromium did not open the page"; }
SESSION=$(cdp Target.attachToTarget "{\"targetId\":\"$TARGET\",\"flatten\":true}" | field sessionId) || true
[ -n "$SESSION" ] || { diagnose; die "cannot attach to the page"; }
say "page opened: $URL"

STATUS=
while [ "$SECONDS" -lt "$deadline" ]; do
    STATUS=$(page_eval "(document.getElementById('status') || {}).textContent || ''")
    case "$STATUS" in *'"state":"done"'* | *'"state":"error"'*) break ;; esac
    sleep 0.5
done
PAGE_LOG=$(page_eval "(document.getElementById('log') || {}).textContent || ''")
cdp Browser.close '{}' >/dev/null || true

say "page status: $STATUS"
say "page log:"
printf '%s\n' "$PAGE_LOG" | sed 's/^/    /' >&2
case "$STATUS" in
    *'"state":"done"'*) ;;
    *) diagnose; die "the page did not finish speaking" ;;
esac
frames=$(printf '%s' "$STATUS" | sed -n 's/.*"frames":\([0-9]*\).*/\1/p')
ttfa=$(printf '%s' "$STATUS" | sed -n 's/.*"ttfa_ms":\([0-9]*\).*/\1/p')
voice=$(printf '%s' "$STATUS" | field voice)
[ "${frames:-0}" -gt 0 ] || die "no audio frames received"
[ -n "$ttfa" ] || die "no time to first audio measured"
[ "$voice" = tiny ] || die "the voice list was not loaded (voice: $voice)"
say "OK: $frames audio frames, time to first audio $ttfa ms, voice $voice"
