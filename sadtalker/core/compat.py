"""Compatibility fixes for third-party packages, applied in exactly one place.

basicsr 1.4.2 (used by gfpgan and facexlib) imports ``torchvision.transforms.functional_tensor``,
a module torchvision 0.17+ removed; its one function basicsr needs (``rgb_to_grayscale``) lives in
``torchvision.transforms.functional``. Call :func:`patch_torchvision` before importing basicsr,
gfpgan or facexlib.

facexlib's RetinaFace builds its backbone with ``torchvision.models.resnet50(pretrained=False)``, an argument
torchvision deprecated in 0.13 (two UserWarnings on every start). :func:`resnet50_current_api` turns that one call
into ``resnet50(weights=None)``, the same untrained network, while RetinaFace is built.
"""

import sys
from contextlib import contextmanager
from typing import Any, Iterator


def patch_torchvision() -> None:
    """Alias the removed torchvision module so basicsr imports. Idempotent."""
    import torchvision.transforms.functional as functional

    sys.modules.setdefault("torchvision.transforms.functional_tensor", functional)


@contextmanager
def resnet50_current_api() -> Iterator[None]:
    """While the block runs, ``torchvision.models.resnet50(pretrained=False)`` is ``resnet50(weights=None)``.

    For building facexlib's RetinaFace only (at start-up, before any job thread): the original function is back
    when the block ends. ``pretrained=True`` (a download) is refused: the weights come from the worker's own file.
    """
    import torchvision.models as models

    original = models.resnet50

    def resnet50(pretrained: bool = False, **kwargs: Any) -> Any:
        if pretrained:
            raise ValueError("resnet50(pretrained=True) would download ImageNet weights; the worker loads its own")
        return original(weights=None, **kwargs)

    models.resnet50 = resnet50
    try:
        yield
    finally:
        models.resnet50 = original
