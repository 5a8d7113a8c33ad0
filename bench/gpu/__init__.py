"""The Python side of ``scripts/gpu_suite.sh``, run as ``python -m bench.gpu <subcommand>`` from the repo root.

Subcommands (one module each; versions, weights, profile and reference write their result to ``--json``,
summary writes ``summary.json`` into the folder it reads):

    versions  --json F            device, driver (nvidia-smi), Python, torch, CUDA and cuDNN versions, and which
                                  optional parts can run (dlib, facexlib, gfpgan)          (versions.py)
    has       F WHAT              exit status 0 when the versions file F says WHAT is available (versions.py)
    weights   --checkpoints DIR   every worker weight file (tests/support/checkpoints.py), written in
                                  parallel processes where missing, reused where present   (weights.py)
    profile   --checkpoints DIR   torch.profiler over one renderer batch and one GFPGAN batch: the most expensive
                                  kernels (ops on a CPU) with their share of the time, seconds per batch, and the
                                  achieved TFLOP/s (torch's FLOP counter, multiply-add = 2, as bench/benchmark.py)
                                                                                           (profile.py)
    reference --reference DIR     the reference's generator (OpenTalker/SadTalker checkout, importable as ``src``:
                                  PYTHONPATH=DIR) and GFPGAN network calls, timed on the same device (reference.py)
    summary   FOLDER              the one table of every JSON file the suite wrote there     (summary.py)

Models are loaded as the worker loads them (``sadtalker.bundle.load_size_models`` and ``load_enhancer``); with
``--small``, the small networks of ``tests/support/smallbundle.py`` stand in, for testing the suite on a CPU.
torch is imported inside the subcommands that need it, so ``has`` and ``summary`` run without it.

Examples:
    python -m bench.gpu profile --device cuda --render-dtype fp16 --json profile.json
    python -m bench.gpu profile --device cpu --small --json profile.json
    PYTHONPATH=../SadTalker python -m bench.gpu reference --reference ../SadTalker --json reference.json
    python -m bench.gpu summary .cache/gpu_suite/20261128-093000
"""
