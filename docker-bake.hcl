# Multi-platform image builds: `docker buildx bake` (both images), `docker buildx bake cpu`,
# `docker buildx bake cuda`. See README.md "Containers".
#
# A multi-platform result cannot be loaded into the classic local image store: add `--push`
# (with IMAGE naming your registry) or build one platform with
# `--set cpu.platforms=linux/amd64 --load`.

variable "IMAGE" {
  default = "vibevoice-rt"
}

variable "TAG" {
  default = "latest"
}

# Compute capability the CUDA kernels are compiled for (PTX, JIT-compiled by the driver for
# newer GPUs; 80 covers Ampere, Ada, Hopper and Blackwell).
variable "CUDA_COMPUTE_CAP" {
  default = "80"
}

group "default" {
  targets = ["cpu", "cuda"]
}

target "cpu" {
  context    = "."
  dockerfile = "docker/Dockerfile.cpu"
  platforms  = ["linux/amd64", "linux/arm64"]
  tags       = ["${IMAGE}:${TAG}-cpu"]
}

target "cuda" {
  context    = "."
  dockerfile = "docker/Dockerfile.cuda"
  platforms  = ["linux/amd64"]
  args = {
    CUDA_COMPUTE_CAP = "${CUDA_COMPUTE_CAP}"
  }
  tags = ["${IMAGE}:${TAG}-cuda"]
}
