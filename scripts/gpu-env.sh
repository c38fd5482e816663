# Shared by the GPU scripts (gpu-check.sh, gpu-compare.sh); source it, do not run it.

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
