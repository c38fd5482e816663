#!/usr/bin/env bash
# Runs the voice-agent frameworks' own released code against a real vibevoice-rt server with the
# tiny fixture (issue 13): Pipecat's CartesiaTTSService, ElevenLabsTTSService and
# OpenAITTSService through Pipecat's test utilities (scripts/frameworks/pipecat_check.py), and
# LiveKit Agents' Cartesia, ElevenLabs and OpenAI plugins (scripts/frameworks/livekit_check.py),
# and the plain WebSocket snippet of docs/integrations.md (scripts/frameworks/websocket_check.py).
# Versions are pinned in scripts/frameworks/requirements.txt and constraints.txt.
#
# Usage: scripts/frameworks_ci.sh
#   VIBEVOICE_RT_BIN     server binary (default: target/debug/vibevoice-rt, built if missing)
#   FRAMEWORKS_VENV      virtual environment to create/reuse (default: target/frameworks-venv)
#   PYTHON               Python interpreter used to create the venv (default: python3)
set -euo pipefail
cd "$(dirname "$0")/.."

KEY=frameworks-ci-key
# shellcheck source=lib/tiny-server.sh
. scripts/lib/tiny-server.sh
# shellcheck source=lib/python-venvs.sh
. scripts/lib/python-venvs.sh
VENV=$FRAMEWORKS_VENV
started=$SECONDS

echo "== venv $VENV with pipecat-ai and livekit-agents (pinned)"
frameworks_venv
echo "-- installed in $((SECONDS - started)) s"

# A fixed seed makes every utterance's length (the tiny model's end of speech is random)
# the same run to run: with seed 6 the interruption checks' long reply lasts 10.5 s and the
# reply after it 4.9 s. A random seed once gave a 0.8 s "long" reply that ended before the
# interruption, so Pipecat had nothing to cancel.
tiny_server_start --api-keys "$KEY" --seed 6
tiny_server_wait_ready

status=0
for check in pipecat livekit websocket; do
    echo "== $check against the real server"
    "$VENV/bin/python" "scripts/frameworks/${check}_check.py" \
        --base-url "http://127.0.0.1:$PORT" --api-key "$KEY" --voice tiny || status=1
done
if [ "$status" -ne 0 ]; then
    echo "-- server log:"; cat "$LOG"
fi
echo "-- frameworks step took $((SECONDS - started)) s"
exit "$status"
