# Sourced by the cross-checks (check-metal.sh, check-arm64.sh).
# ensure_rust_target TARGET: installs the Rust standard library for TARGET with rustup when it
# is missing; prints why and returns 1 when that cannot be done here (the caller skips).
ensure_rust_target() {
    local target=$1
    if ! command -v rustup >/dev/null 2>&1; then
        echo "no rustup to install the $target target"
        return 1
    fi
    if ! rustup target list --installed | grep -qx "$target"; then
        log "installing the Rust standard library for $target"
        if ! rustup target add "$target" >&2; then
            echo "the $target target cannot be installed here"
            return 1
        fi
    fi
}
