#!/usr/bin/env python3
"""Compiles vibevoice-rt's fused CUDA kernels with NVRTC, as the binary does at run time, so a
kernel that does not compile fails the CUDA build here instead of silently falling back to
candle ops on the GPU machine.

Usage: check-cuda-kernels.py LIBNVRTC [SOURCE_ROOT]
  LIBNVRTC: path of libnvrtc (libnvrtc-builtins must be on the loader path);
  SOURCE_ROOT: the workspace whose kernels to compile (default: this repository).
Exit status 0 when the kernels compile; the NVRTC log otherwise.
"""
import ctypes
import pathlib
import re
import sys

# Where the kernels live (the first that exists: builds of older commits kept them in vv-model).
KERNELS = ("crates/vv-kernels/src/cuda", "crates/vv-model/src/cuda_kernels")


def source(root: pathlib.Path) -> str:
    """PRELUDE of mod.rs, then each `module::SOURCE` in the order mod.rs concatenates them."""
    kernels = next((root / k for k in KERNELS if (root / k / "mod.rs").is_file()), root / KERNELS[0])
    module = (kernels / "mod.rs").read_text()
    parts = [("mod.rs", "PRELUDE")] + [
        (f"{name}.rs", "SOURCE") for name in re.findall(r"(\w+)::SOURCE", module)
    ]
    text = []
    for file, name in parts:
        rust = (kernels / file).read_text()
        match = re.search(r'const %s: &str = r#"(.*?)"#;' % name, rust, re.S)
        if not match:
            sys.exit(f"no `const {name}` raw string in {file}")
        text.append(match.group(1))
    return "".join(text)


def main() -> int:
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    root = pathlib.Path(sys.argv[2] if len(sys.argv) == 3 else pathlib.Path(__file__).resolve().parent.parent)
    nvrtc = ctypes.CDLL(sys.argv[1])
    program = ctypes.c_void_p()
    if nvrtc.nvrtcCreateProgram(ctypes.byref(program), source(root).encode(), b"vv_fused_kernels.cu", 0, None, None):
        sys.exit("nvrtcCreateProgram failed")
    result = nvrtc.nvrtcCompileProgram(program, 0, None)
    size = ctypes.c_size_t()
    nvrtc.nvrtcGetProgramLogSize(program, ctypes.byref(size))
    log = ctypes.create_string_buffer(size.value)
    nvrtc.nvrtcGetProgramLog(program, log)
    if result != 0:
        print(log.value.decode(errors="replace"), file=sys.stderr)
        print(f"the fused CUDA kernels do not compile (NVRTC result {result})", file=sys.stderr)
        return 1
    print("fused CUDA kernels compile with NVRTC")
    return 0


if __name__ == "__main__":
    sys.exit(main())
