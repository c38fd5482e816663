#!/usr/bin/env bash
# Installs the outside tools of .ci/run's end-to-end checks: the three Python virtual
# environments (OpenAI SDK, Pipecat + LiveKit Agents, the soak's aiohttp) and Debian's Chromium
# when it is missing. .ci/run starts it in the background, at low priority, while the Rust
# build runs: downloads wait on the network, not on the two cores the compiler keeps busy.
# The checks install the same way themselves, so each also runs alone.
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=lib/python-venvs.sh
. scripts/lib/python-venvs.sh

started=$SECONDS
if ! command -v chromium >/dev/null 2>&1; then
    echo "== Chromium from Debian"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
echo "== venv: OpenAI SDK"
openai_sdk_venv
echo "== venv: Pipecat and LiveKit Agents"
frameworks_venv
echo "== venv: aiohttp (soak)"
soak_venv
echo "== outside tools installed in $((SECONDS - started)) s"
