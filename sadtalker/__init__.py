"""SadTalker (CVPR 2023) as a RunPod worker: one face photo + speech -> a talking-head MP4.

The map, top to bottom. A package imports only packages below it; the five stage packages in the middle import
none of each other.

- ``pipeline``  the order of the stages: AnimationRequest -> coefficients -> frames -> MP4 (an Animation)
- ``bundle``    every model a job needs, loaded and prepared once per worker
- ``worker/``   the job around the pipeline: input options, settings, downloads, media decoding, storage, start-up
- ``weights/``  the weights table (names, sizes, hashes, URLs) and the one loader that opens weight files
- ``kernels/``  inference paths attached at load time: fused/Winograd/FFT convs, channels-last, allocator
- ``output/``   paste-back into the photo (``full`` mode) and the H.264/AAC encoder
- ``enhance/``  GFPGAN (and the optional RestoreFormer): the networks, their inference forward, the enhance stage
- ``render/``   the face renderer's networks, one module each, camera keyframes, and the render stage
- ``motion/``   mel features, ExpNet, PoseVAE, the coefficient stage, chunking and seams
- ``face/``     face finders, crop, 3DMM alignment, ReconNet, and the preprocess stage (photo and reference video)
- ``core/``     constants, errors, the typed stage contract, precision regions, job bookkeeping, the output
                 frames' instants on the 25 fps coefficients (timeline)

``handler.py`` (outside the package) is RunPod's entry point. Importing this package is cheap: no torch, no model.
"""
