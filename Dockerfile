# syntax=docker/dockerfile:1
# SadTalker RunPod worker: one image with the verified weights baked in, so a cold worker downloads nothing.
#   docker build -t <registry>/sadtalker-worker:<tag> .
#   docker run --gpus all -p 8000:8000 <registry>/sadtalker-worker:<tag>     (local API, see README "Deployment")

# CUDA 12.8 base with torch's CUDA 12.8 wheels (cu128), so the image runs on hosts whose NVIDIA driver is 570 or
# newer (CUDA 12.8, 12.9 and 13.x drivers). The torch/torchvision versions are the pinned ones (requirements-torch.txt);
# only their CUDA build differs from the PyPI wheels (CUDA 13.0, driver 580+) that `make install` puts in .venv.
# CUDA_VERSION is the one switch: the base image tag is built from it, and the torch wheel index from its major and
# minor version (12.8.1 -> https://download.pytorch.org/whl/cu128). A CUDA 13.0 image:
#   docker build --build-arg CUDA_VERSION=13.0.1 ...      (torch cu130 wheels, nvidia/cuda:13.0.1-base-ubuntu24.04)
# TORCH_CUDA overrides the wheel index alone (e.g. TORCH_CUDA=cu129 on the 12.8 base); BASE_IMAGE the whole base (the
# nvidia/cuda images set CUDA_VERSION in their environment too, which wins in RUN: the index follows the base used).
# The "base" flavour holds the CUDA runtime core and NVIDIA's container settings (NVIDIA_REQUIRE_CUDA=cuda>=12.8, so
# a host whose driver is too old refuses to start the container instead of failing inside torch). torch installs its
# own cuBLAS/cuDNN/NCCL wheels, so the "runtime"/"cudnn-runtime" flavours would only add a second copy of those
# libraries (GBs that every new worker has to pull). Ubuntu 24.04 for a current ffmpeg (6.1).
ARG CUDA_VERSION=12.8.1
ARG BASE_IMAGE=nvidia/cuda:${CUDA_VERSION}-base-ubuntu24.04

# ---------------------------------------------------------------------------------------------------------------
# Stage "weights": fetch and verify the weight files. Its own stage, depending only on the download script and
# its manifest, so editing code or requirements never re-downloads 2.4 GB; the final stage copies the result.
FROM ${BASE_IMAGE} AS weights

# curl and CA certificates are all the download script needs (sha256sum and stat come with the base).
# Apt versions are not pinned: the base tag fixes the Ubuntu release, and Ubuntu drops superseded versions.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/*

# "all" bakes both renderers (256 and 512); "256" saves 725 MB but size=512 jobs then fail.
ARG WEIGHTS_SIZE=all
COPY scripts/download_models.sh scripts/weights.tsv /opt/fetch/
RUN bash /opt/fetch/download_models.sh --size "${WEIGHTS_SIZE}" --dir /weights

# ---------------------------------------------------------------------------------------------------------------
# Final stage: Python 3.11, ffmpeg, the pinned dependencies, the weights, the code.
FROM ${BASE_IMAGE} AS worker

# No prompts from apt; unbuffered Python so logs reach RunPod as they happen; no .pyc writes into the read-only app.
ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# Python 3.11 (the version the pinned requirements were resolved and tested on) from the deadsnakes PPA, since
# Ubuntu 24.04 ships 3.12; ffmpeg from Ubuntu (with ffprobe; sadtalker/output/ffmpeg.py prefers it over imageio's build).
# software-properties-common is only needed to add the PPA and is removed again. Apt versions: see above.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates gpg-agent software-properties-common \
 && add-apt-repository -y ppa:deadsnakes/ppa \
 && apt-get update \
 && apt-get install -y --no-install-recommends python3.11 python3.11-venv ffmpeg \
 && apt-get purge -y --auto-remove software-properties-common gpg-agent \
 && rm -rf /var/lib/apt/lists/*

# The worker runs as an unprivileged user (RunPod runs the image's USER); the venv and /app stay root-owned.
RUN groupadd --gid 10001 worker \
 && useradd --create-home --uid 10001 --gid 10001 --shell /usr/sbin/nologin worker \
 && python3.11 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    VIRTUAL_ENV=/opt/venv \
    CHECKPOINTS_DIR=/app/checkpoints
WORKDIR /app

# Weights before dependencies: the 2.4 GB layer then survives requirement changes (and is pushed once).
COPY --from=weights /weights /app/checkpoints

# First torch and torchvision alone, at their pinned versions, from PyTorch's index for the base's CUDA release
# (with the NVIDIA libraries they need). Then the same pinned files, commands and flags as the Makefile (a test
# compares them), from PyPI: torch's pin is already met, so the runtime pins resolve around the CUDA build installed
# above; then basicsr/facexlib/gfpgan with --no-deps (keeps opencv-python and tb-nightly out) and
# --no-build-isolation (stops basicsr's build from pulling a second torch). The last line fails the build if a
# different torch build was installed after all.
ARG CUDA_VERSION
ARG TORCH_CUDA=""
COPY requirements-torch.txt requirements.txt requirements-nodeps.txt ./
RUN torch_cuda="${TORCH_CUDA:-cu$(echo "${CUDA_VERSION}" | cut -d. -f1,2 | tr -d .)}" \
 && echo "torch wheels: https://download.pytorch.org/whl/${torch_cuda}" \
 && pip install --no-cache-dir --index-url "https://download.pytorch.org/whl/${torch_cuda}" -r requirements-torch.txt \
 && pip install --no-cache-dir -r requirements-torch.txt -r requirements.txt \
 && pip install --no-cache-dir --no-deps --no-build-isolation -r requirements-nodeps.txt \
 && python -c "import sys, torch; v = torch.__version__; print('torch', v); sys.exit(not v.endswith('+' + sys.argv[1]))" "${torch_cuda}"

# The code last, so that editing it rebuilds only these small layers.
COPY handler.py test_input.json ./
COPY sadtalker/ sadtalker/
COPY scripts/ scripts/

# Numeric, so the host can resolve it without reading the image's /etc/passwd.
USER 10001:10001

# The local API port (WORKER_MODE=api, the default off RunPod); RunPod's queue worker listens on nothing.
EXPOSE 8000

# Exec form, through bash so a lost executable bit cannot stop the start. It starts the serverless worker on
# RunPod and the local API elsewhere (scripts/entrypoint.sh).
CMD ["bash", "/app/scripts/entrypoint.sh"]
