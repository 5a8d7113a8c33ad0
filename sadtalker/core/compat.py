"""Compatibility fixes for third-party packages, applied in exactly one place.

basicsr 1.4.2 (used by gfpgan and facexlib) imports ``torchvision.transforms.functional_tensor``,
a module torchvision 0.17+ removed; its one function basicsr needs (``rgb_to_grayscale``) lives in
``torchvision.transforms.functional``. Call :func:`patch_torchvision` before importing basicsr,
gfpgan or facexlib.
"""
import sys


def patch_torchvision() -> None:
    """Alias the removed torchvision module so basicsr imports. Idempotent."""
    import torchvision.transforms.functional as functional

    sys.modules.setdefault("torchvision.transforms.functional_tensor", functional)
