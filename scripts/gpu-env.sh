# Shared by the GPU scripts (gpu-check.sh, gpu-compare.sh, gpu-capacity.sh, gpu-latency.sh);
# source it, do not run it.

# Adds a Python environment's CUDA 13 libraries (cuBLAS, cuRAND, NVRTC from the nvidia-* wheels)
# to LD_LIBRARY_PATH when the system loader does not know them.
add_cuda_libraries() {
    ldconfig -p | grep -q 'libcublas\.so\.13' && return 0
    local dir
    for dir in $(python3 -c 'import nvidia, os; [print(os.path.join(p, "cu13", "lib")) for p in nvidia.__path__]' 2>/dev/null); do
        [[ -f $dir/libcublas.so.13 ]] && export LD_LIBRARY_PATH=$dir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
    done
    return 0
}

# unpack_binary XZ NAME: unpacks the xz-compressed binary XZ into a temporary directory as NAME
# and prints its path.
unpack_binary() {
    local unpacked
    unpacked=$(mktemp -d)/$2
    xz -dc "$1" >"$unpacked" && chmod +x "$unpacked" && echo "$unpacked"
}

# resolve_binary [PATH]: sets `bin` to the binary to check (PATH, default .gpu/vibevoice-rt; its
# .xz unpacked when only that exists); exits with status 2 when there is none.
resolve_binary() {
    bin=${1:-.gpu/vibevoice-rt}
    if [[ ! -x $bin && -f $bin.xz ]]; then
        bin=$(unpack_binary "$bin.xz" vibevoice-rt)
    fi
    [[ -x $bin ]] || { echo "no binary at $bin"; exit 2; }
}

# get PATH: the body of GET PATH on the local service at $port (python: curl may be missing).
get() {
    python3 -c 'import sys, urllib.request; sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())' \
        "http://127.0.0.1:$port$1"
}

# free_port: a local TCP port nothing listens on now (the scripts' servers each take their own,
# so a server left running by an earlier run cannot answer for the one under test).
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_ready PID: polls /ready on $port until it answers 200 (success), or until the process
# PID exits or 300 s pass (failure).
wait_ready() {
    for _ in $(seq 1 600); do
        kill -0 "$1" 2>/dev/null || return 1
        get /ready >/dev/null 2>&1 && return 0
        sleep 0.5
    done
    return 1
}
