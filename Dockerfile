# syntax=docker/dockerfile:1
# SadTalker RunPod worker: one image with the verified weights baked in, so a cold worker downloads nothing.
#   docker build -t <registry>/sadtalker-worker:<tag> .
#   docker run --gpus all -p 8000:8000 <registry>/sadtalker-worker:<tag>     (local API, see README "Deployment")

# CUDA 13.0 base, because torch 2.14.1's PyPI wheels are CUDA 13.0 builds. The "base" flavour holds the CUDA
# runtime core and NVIDIA's container settings (NVIDIA_REQUIRE_CUDA=cuda>=13.0, so a host whose driver is too
# old refuses to start the container instead of failing inside torch). torch installs its own cuBLAS/cuDNN/NCCL
# from PyPI, so the "runtime"/"cudnn-runtime" flavours would only add a second copy of those libraries (GBs that
# every new worker has to pull). Ubuntu 24.04 for a current ffmpeg (6.1).
ARG BASE_IMAGE=nvidia/cuda:13.0.1-base-ubuntu24.04

# ---------------------------------------------------------------------------------------------------------------
# Stage "weights": fetch and verify the weight files. Its own stage, depending only on the download script and
# its manifest, so editing code or requirements never re-downloads 2.5 GB; the final stage copies the result.
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

# Weights before dependencies: the 2.5 GB layer then survives requirement changes (and is pushed once).
COPY --from=weights /weights /app/checkpoints

# The same pinned files, commands and flags as the Makefile (a test compares them): torch and the runtime pins
# resolved together; then basicsr/facexlib/gfpgan/face-alignment with --no-deps (keeps opencv-python and
# tb-nightly out) and --no-build-isolation (stops basicsr's build from pulling a second torch).
COPY requirements-torch.txt requirements.txt requirements-nodeps.txt ./
RUN pip install --no-cache-dir -r requirements-torch.txt -r requirements.txt \
 && pip install --no-cache-dir --no-deps --no-build-isolation -r requirements-nodeps.txt

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
