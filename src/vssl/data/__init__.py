"""Video data layer: decoders, clip sampling, batched transforms and dataset adapters.

``vssl.data.ClipDataset`` and ``vssl.data.VideoReader`` are imported lazily so that importing the
package (e.g. for ``vssl data summary``) does not pull in torch.
"""

_LAZY = {"ClipDataset": "vssl.data.dataset", "VideoReader": "vssl.data.video", "write_video": "vssl.data.video"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'vssl.data' has no attribute {name!r}")


__all__ = list(_LAZY)
