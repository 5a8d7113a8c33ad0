"""Inference paths attached to loaded networks: fused, Winograd and FFT convs, channels-last, the allocator tweak."""
