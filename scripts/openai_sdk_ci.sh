#!/usr/bin/env bash
# Runs the official `openai` Python SDK against a real vibevoice-rt server with the tiny fixture.
#
# Usage: scripts/openai_sdk_ci.sh
#   VIBEVOICE_RT_BIN     server binary (default: target/debug/vibevoice-rt, built if missing)
#   OPENAI_SDK_VENV      virtual environment to create/reuse (default: target/openai-sdk-venv)
#   PYTHON               Python interpreter used to create the venv (default: python3)
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=lib/tiny-server.sh
. scripts/lib/tiny-server.sh
# shellcheck source=lib/python-venvs.sh
. scripts/lib/python-venvs.sh
VENV=$OPENAI_SDK_VENV

echo "== venv $VENV with the openai package"
openai_sdk_venv

tiny_server_start
tiny_server_wait_ready

echo "== openai SDK check"
if ! "$VENV/bin/python" scripts/openai_sdk_check.py --base-url "http://127.0.0.1:$PORT/v1"; then
    echo "-- server log:"; cat "$LOG"; exit 1
fi
