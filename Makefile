# Two commands on a fresh Debian 12 machine with Python 3.11:
#   make run    install on first use, fetch the missing weights, run test_input.json, write the video to output/
#   make test   install on first use, then run the whole test suite (what CI runs)
#   make test-fast   the same without the tests marked slow (real-size renders, long audio, the S3 server)
#   make lint   ruff (lint + format check) and mypy, configured in pyproject.toml; make test runs it first
#   make demo   install on first use, generate stand-in weights once, run test_input.json on them (no download)
# Installing = Debian packages (only when run as root, only the missing ones) + .venv with the pinned requirements.
# The venv is rebuilt-in-place (pip re-run) whenever a requirements file changes (stamp file below).

PYTHON ?= python3.11
VENV := .venv
VPY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.requirements-installed
REQUIREMENTS := requirements-torch.txt requirements.txt requirements-nodeps.txt requirements-test.txt pyproject.toml
PYTEST_ARGS ?=
# make run: where the weights go (the worker's default, see Settings), which renderer sizes to fetch (256 is what
# test_input.json and the default LOAD_512=lazy need; 512 or all for size-512 jobs), the job, the video folder.
CHECKPOINTS_DIR ?= ./checkpoints
WEIGHTS_SIZE ?= 256
JOB ?= test_input.json
OUT ?= output
export CHECKPOINTS_DIR

# ffmpeg (with ffprobe) encodes and decodes media; python3.11-venv gives Debian's python3.11 its venv module;
# curl and the CA certificates fetch the weights (scripts/download_models.sh).
RUN_DEBS := ffmpeg python3.11-venv curl ca-certificates
# OpenStack Swift with s3api + memcached: the real S3 server of the storage integration test.
TEST_DEBS := $(RUN_DEBS) swift-proxy swift-account swift-container swift-object memcached

# make demo: generated stand-ins of the weight files a 256 worker with dlib's face finder loads (the official
# layouts filled with seeded random numbers, tests/support/checkpoints.py), written once; regenerated when the
# writer or a manifest changes.
DEMO_CHECKPOINTS ?= .cache/demo_checkpoints
DEMO_FILES := SadTalker_V0.0.2_256.safetensors mapping_00229-model.pth.tar mapping_00109-model.pth.tar \
	GFPGANv1.4.pth detection_Resnet50_Final.pth
DEMO_STAMP := $(DEMO_CHECKPOINTS)/.generated

.PHONY: run weights demo test test-fast lint install debs-run debs-test

# The worker's start-up in this process, one job, the video written to $(OUT)/<job id>.mp4 (scripts/run_local.py).
# `python handler.py` stays the RunPod entry point.
run: debs-run install weights
	$(VPY) scripts/run_local.py $(JOB) --out $(OUT)

# The worker's mechanics without the official weights or a network: the generated weights and the settings they
# need (sizes unchecked, dlib's face finder, which needs no downloaded weights, the CPU). The video has the real
# sizes, sound and timing; its picture is noise, and the result's warnings say so.
demo: debs-run install $(DEMO_STAMP)
	CHECKPOINTS_DIR=$(DEMO_CHECKPOINTS) CHECK_WEIGHT_SIZES=false FACE_DETECTOR=dlib DEVICE=cpu \
		$(VPY) scripts/run_local.py $(JOB) --out $(OUT)

$(DEMO_STAMP): tests/support/checkpoints.py $(wildcard tests/support/checkpoint_manifests/*.json) | install
	$(VPY) -m tests.support.checkpoints $(DEMO_CHECKPOINTS) $(DEMO_FILES)
	touch $@

# Fetches only what is missing or fails its SHA-256 (resuming .part files); without network it stops with one
# message naming the unreachable URL and the files still missing (scripts/download_models.sh, exit 3).
weights:
	bash scripts/download_models.sh --size $(WEIGHTS_SIZE) --dir $(CHECKPOINTS_DIR)

# pytest exit 5 means "no tests collected": reported and kept as a failure.
test: debs-test install lint
	$(VPY) -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests (exit 5), which counts as a failure" >&2; fi; \
	exit $$rc

# Everything but the tests marked slow (pytest.ini): a quick round while editing.
test-fast: debs-run install
	$(VPY) -m pytest -m "not slow" $(PYTEST_ARGS)

# ruff's lint rules and formatting, then mypy: clean, or the target fails.
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

install: $(STAMP)

# The recipe of requirements-nodeps.txt's header: torch first, the no-deps set without build isolation.
$(STAMP): $(REQUIREMENTS)
	test -x $(VPY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -r requirements-torch.txt -r requirements.txt
	$(PIP) install --no-deps --no-build-isolation -r requirements-nodeps.txt
	$(PIP) install -r requirements-test.txt
	$(PIP) install --no-deps --no-build-isolation -e .
	touch $@

# Installs only what dpkg does not already have; without root it says what is missing and goes on.
define install_debs
	@missing=""; for p in $(1); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" != 0 ]; then echo "make: not root, not installing Debian packages:$$missing" >&2; exit 0; fi; \
	echo "make: installing Debian packages:$$missing"; \
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing
endef

debs-run:
	$(call install_debs,$(RUN_DEBS))

debs-test:
	$(call install_debs,$(TEST_DEBS))
