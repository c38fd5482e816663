# Sourced by the Python-driven checks (openai_sdk_ci.sh, frameworks_ci.sh, soak.sh) and by
# ci-tools.sh, which installs all three ahead of time. Each function creates its virtual
# environment when missing and installs (or confirms) its packages in the directory named by
# the check's own variable (OPENAI_SDK_VENV, FRAMEWORKS_VENV, SOAK_VENV; defaults under target/,
# set here). PYTHON names the interpreter that creates them (default python3).

OPENAI_SDK_VENV=${OPENAI_SDK_VENV:-target/openai-sdk-venv}
FRAMEWORKS_VENV=${FRAMEWORKS_VENV:-target/frameworks-venv}
SOAK_VENV=${SOAK_VENV:-target/soak-venv}

# venv_install DIR PIP-ARGS...: creates DIR as a venv when missing, then `pip install PIP-ARGS`.
venv_install() {
    local venv=$1
    shift
    [ -x "$venv/bin/python" ] || "${PYTHON:-python3}" -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$@"
}

# The official OpenAI SDK (latest: the check follows what users install today).
openai_sdk_venv() {
    venv_install "$OPENAI_SDK_VENV" --upgrade openai
}

# Pipecat and LiveKit Agents, pinned (scripts/frameworks/requirements.txt, constraints.txt).
frameworks_venv() {
    venv_install "$FRAMEWORKS_VENV" \
        -r scripts/frameworks/requirements.txt -c scripts/frameworks/constraints.txt
}

# aiohttp for the soak's clients.
soak_venv() {
    venv_install "$SOAK_VENV" aiohttp
}
