"""The DAVIS-2017 folder layout: frames, object-id masks and the palette PNGs they are stored in.

Layout: ``ROOT/JPEGImages/480p/<video>/00000.jpg`` and ``ROOT/Annotations/480p/<video>/00000.png``
(palette PNG: pixel value = object id 1..N, 0 background, 255 void = background, as the official
reader of ``davisvideochallenge/davis2017-evaluation`` does). ``vssl synth --masks`` writes it,
``vssl viz segment`` reads it and scores predictions written in the same format
(:mod:`vssl.viz.davis`).
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from vssl.errors import VsslError

VOID = 255


def palette(n: int = 256) -> list[int]:
    """The PASCAL-VOC colour map DAVIS annotations use (id 1 red, 2 green, 3 yellow, ...), flat RGB."""
    return list(_palette(n))


@functools.lru_cache(maxsize=4)
def _palette(n: int) -> tuple[int, ...]:
    out = []
    for i in range(n):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        out += [r, g, b]
    return tuple(out)


def write_annotation(path: str | Path, ids: np.ndarray) -> None:
    """One frame's object ids (H, W) as a palette PNG (DAVIS ``Annotations`` or results format)."""
    from PIL import Image

    path = Path(path)
    if not path.parent.is_dir():
        path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(np.asarray(ids, dtype=np.uint8), mode="P")
    img.putpalette(_palette(256))
    img.save(path)


def read_annotation(path: str | Path) -> np.ndarray:
    """Object ids (H, W) uint8 of a palette (or greyscale) PNG; void (255) becomes background."""
    from PIL import Image

    with Image.open(path) as img:
        if img.mode not in ("P", "L"):
            raise VsslError(f"{path}: expected a palette or greyscale PNG of object ids, got mode {img.mode}")
        ids = np.array(img)
    ids[ids == VOID] = 0
    return ids


def list_sequences(root: str | Path, resolution: str = "480p", subset: str | None = None) -> list[str]:
    """Video names: ``ImageSets/2017/<subset>.txt`` when ``subset`` is given, else every folder of
    ``JPEGImages/<resolution>`` that has an annotation folder, sorted."""
    root = Path(root)
    img_dir = root / "JPEGImages" / resolution
    if not img_dir.is_dir():
        raise VsslError(f"{root}: no JPEGImages/{resolution} folder (expected the DAVIS-2017 layout)")
    if subset:
        lst = root / "ImageSets" / "2017" / f"{subset}.txt"
        if not lst.is_file():
            raise VsslError(f"{lst}: not found")
        return [s.strip() for s in lst.read_text().splitlines() if s.strip()]
    return sorted(p.name for p in img_dir.iterdir() if p.is_dir()
                  and (root / "Annotations" / resolution / p.name).is_dir())


def read_frames(root: str | Path, video: str, resolution: str = "480p") -> np.ndarray:
    """uint8 (T, H, W, 3) of ``JPEGImages/<resolution>/<video>/*.jpg`` in name order."""
    from PIL import Image

    files = sorted((Path(root) / "JPEGImages" / resolution / video).glob("*.jpg"))
    if not files:
        raise VsslError(f"{Path(root) / 'JPEGImages' / resolution / video}: no .jpg frames")
    frames = []
    for f in files:
        with Image.open(f) as img:
            frames.append(np.asarray(img.convert("RGB")))
    return np.stack(frames)


def read_masks(folder: str | Path, num_frames: int | None = None, shape: tuple[int, int] | None = None) -> np.ndarray:
    """uint8 object ids (T, H, W) of the ``*.png`` in ``folder`` in name order. Missing trailing frames
    (fewer PNGs than ``num_frames``) are empty, as the official reader pads them."""
    files = sorted(Path(folder).glob("*.png"))
    if not files and (num_frames is None or shape is None):
        raise VsslError(f"{folder}: no .png masks")
    masks = [read_annotation(f) for f in files]
    if num_frames is not None:
        if len(masks) > num_frames:
            raise VsslError(f"{folder}: {len(masks)} masks for {num_frames} frames")
        shape = masks[0].shape if masks else shape
        masks += [np.zeros(shape, np.uint8)] * (num_frames - len(masks))
    return np.stack(masks)


def read_sequence(root: str | Path, video: str, resolution: str = "480p") -> tuple[np.ndarray, np.ndarray]:
    """(frames uint8 (T, H, W, 3), object ids uint8 (T, H, W)) of one DAVIS video."""
    frames = read_frames(root, video, resolution)
    ann = read_masks(Path(root) / "Annotations" / resolution / video, len(frames), frames.shape[1:3])
    if ann.shape != frames.shape[:3]:
        raise VsslError(f"{root}: {video}: annotations {ann.shape} do not match the frames {frames.shape[:3]}")
    return frames, ann
