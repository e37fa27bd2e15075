"""Shared pieces of the visualisations: clips to uint8 frames, colour maps and overlays, labelled
grids, PNG/GIF writing (PIL), centre clips of video files, and run checkpoints back into methods.

Every figure is an RGB uint8 ``numpy`` array until it is written, so sizes are exact and testable:
a grid of ``rows x cols`` tiles of ``h x w`` pixels is ``gap + rows * (h + gap)`` (+ ``HEADER`` with
column labels) high and ``gap + cols * (w + gap)`` (+ ``LABEL_W`` with row labels) wide.
"""

from __future__ import annotations

import colorsys
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from vssl.errors import CheckpointError, VsslError

if TYPE_CHECKING:
    import torch

    from vssl.config import DataConfig, RunConfig

GAP = 2  # pixels between tiles
HEADER = 14  # column-label strip
LABEL_W = 112  # row-label column (labels wrap onto several lines)
LINE_H = 12  # label line height
TIME_BAR = 3  # progress strip under every GIF frame (also keeps consecutive frames distinct)
BACKGROUND = (255, 255, 255)
TUBELET_COLOURS = ((255, 60, 60), (40, 150, 255), (255, 210, 0), (0, 220, 120), (220, 80, 255))


# --------------------------------------------------------------------------------------------------
# Frames and colours
# --------------------------------------------------------------------------------------------------

def to_frames(clip: torch.Tensor) -> np.ndarray:
    """A clip (C, T, H, W), uint8 or float in [0, 1], -> uint8 (T, H, W, 3) RGB (grey if C == 1)."""
    import torch

    x = clip.detach().cpu()
    if x.dtype != torch.uint8:
        x = (x.float().clamp(0, 1) * 255).round().to(torch.uint8)
    if x.shape[0] == 1:
        x = x.expand(3, *x.shape[1:])
    return np.ascontiguousarray(x.permute(1, 2, 3, 0).numpy())


def zoom_for(size: int, target: int = 96) -> int:
    """Integer upscaling factor that brings a ``size``-pixel frame to at least ``target`` px (>= 1)."""
    return max(1, math.ceil(target / max(int(size), 1)))


def upscale(images: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour upscaling of (..., H, W, C) by an integer factor (pixels stay visible)."""
    if factor == 1:
        return images
    return images.repeat(factor, axis=-3).repeat(factor, axis=-2)


def pick_frames(num_frames: int, k: int = 8, step: int = 1) -> list[int]:
    """At most ``k`` evenly spaced frame indices among ``0, step, 2 * step, ... < num_frames``."""
    candidates = list(range(0, num_frames, max(step, 1)))
    if len(candidates) <= k:
        return candidates
    return [candidates[round(i * (len(candidates) - 1) / (k - 1))] for i in range(k)]


@lru_cache(maxsize=8)
def _lut(name: str) -> np.ndarray:
    import matplotlib

    return (matplotlib.colormaps[name](np.linspace(0, 1, 256))[:, :3] * 255).round().astype(np.uint8)


def colormap(values: np.ndarray, name: str = "turbo") -> np.ndarray:
    """Values in [0, 1] (any shape) -> uint8 RGB (..., 3) through a matplotlib colour map."""
    idx = (np.clip(np.nan_to_num(np.asarray(values, dtype=np.float64)), 0, 1) * 255).round().astype(np.intp)
    return _lut(name)[idx]


def overlay(frames: np.ndarray, heat: np.ndarray, alpha: float = 0.5, name: str = "turbo") -> np.ndarray:
    """Blend a heat map (T, H, W) in [0, 1] over uint8 frames (T, H, W, 3); the blend weight grows
    with the heat (``alpha * heat``), so cold regions keep the clip's own colours."""
    heat = np.clip(np.asarray(heat, dtype=np.float32), 0, 1)
    w = (alpha * heat)[..., None]
    out = frames.astype(np.float32) * (1 - w) + colormap(heat, name).astype(np.float32) * w
    return out.round().astype(np.uint8)


def category_colours(ids: np.ndarray) -> np.ndarray:
    """A fixed colour per non-negative integer id (golden-ratio hues, alternating saturation and
    value), the same for an id in every figure; -1 gives mid grey. (...,) int -> (..., 3) uint8."""
    ids = np.asarray(ids, dtype=np.int64)
    top = int(ids.max()) + 1 if ids.size else 0
    table = np.array([[int(round(255 * c)) for c in colorsys.hsv_to_rgb(
        (i * 0.6180339887) % 1.0, (0.55, 0.85, 0.7)[i % 3], (0.95, 0.75)[(i // 3) % 2])]
        for i in range(max(top, 1))], dtype=np.uint8)
    out = np.full(ids.shape + (3,), 128, dtype=np.uint8)
    valid = ids >= 0
    out[valid] = table[ids[valid]]
    return out


def token_map_to_pixels(values: np.ndarray, tubelet: int, patch: int) -> np.ndarray:
    """A token grid (t, h, w[, ...]) -> per pixel (t * tubelet, h * patch, w * patch[, ...]) (blocks)."""
    return values.repeat(tubelet, axis=0).repeat(patch, axis=1).repeat(patch, axis=2)


# --------------------------------------------------------------------------------------------------
# Layout and files
# --------------------------------------------------------------------------------------------------

@lru_cache(maxsize=1)
def _font():
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=10)
    except TypeError:  # Pillow < 10.1: bitmap font only
        return ImageFont.load_default()


def _fit(draw, text: str, width: int) -> str:
    while text and draw.textlength(text, font=_font()) > width:
        text = text[:-1]
    return text


def _wrap(draw, text: str, width: int, max_lines: int) -> list[str]:
    """Greedy word wrap into at most ``max_lines`` lines of ``width`` pixels (the last one cut)."""
    lines: list[str] = []
    for word in text.split():
        if lines and draw.textlength(f"{lines[-1]} {word}", font=_font()) <= width:
            lines[-1] = f"{lines[-1]} {word}"
        else:
            lines.append(word)
    lines = lines[:max_lines] if len(lines) <= max_lines else lines[:max_lines - 1] + [" ".join(lines[max_lines - 1:])]
    return [_fit(draw, line, width) for line in lines]


def grid(tiles: Sequence[Sequence[np.ndarray]], row_labels: Sequence[str] | None = None,
         col_labels: Sequence[str] | None = None, gap: int = GAP) -> np.ndarray:
    """Tiles (all the same h x w x 3 uint8) in a labelled grid on a white background.

    Size: ``(HEADER if col_labels) + gap + rows * (h + gap)`` x ``(LABEL_W if row_labels) + gap +
    cols * (w + gap)``. Labels are cut to fit their cell.
    """
    from PIL import Image, ImageDraw

    rows, cols = len(tiles), max(len(r) for r in tiles)
    h, w = tiles[0][0].shape[:2]
    top, left = (HEADER if col_labels else 0), (LABEL_W if row_labels else 0)
    out = np.full((top + gap + rows * (h + gap), left + gap + cols * (w + gap), 3), BACKGROUND, np.uint8)
    for r, row in enumerate(tiles):
        for c, tile in enumerate(row):
            if tile.shape[:2] != (h, w):
                raise ValueError(f"grid: tile ({r}, {c}) is {tile.shape[:2]}, expected {(h, w)}")
            y, x = top + gap + r * (h + gap), left + gap + c * (w + gap)
            out[y:y + h, x:x + w] = tile
    if row_labels or col_labels:
        img = Image.fromarray(out)
        draw = ImageDraw.Draw(img)
        for c, text in enumerate(col_labels or ()):
            draw.text((left + gap + c * (w + gap) + 2, 1), _fit(draw, str(text), w - 2), fill=(0, 0, 0), font=_font())
        for r, text in enumerate(row_labels or ()):
            lines = _wrap(draw, str(text), left - 4, max(1, h // LINE_H))
            y = top + gap + r * (h + gap) + max(0, (h - LINE_H * len(lines)) // 2)
            for i, line in enumerate(lines):
                draw.text((2, y + i * LINE_H), line, fill=(0, 0, 0), font=_font())
        out = np.asarray(img).copy()
    return out


def hstack(panels: Sequence[np.ndarray], gap: int = GAP) -> np.ndarray:
    """Images of equal height side by side with ``gap`` white pixels between and around them."""
    h = panels[0].shape[0]
    width = gap + sum(p.shape[1] + gap for p in panels)
    out = np.full((h + 2 * gap, width, 3), BACKGROUND, np.uint8)
    x = gap
    for p in panels:
        out[gap:gap + h, x:x + p.shape[1]] = p
        x += p.shape[1] + gap
    return out


def with_header(image: np.ndarray, labels: Sequence[str], xs: Sequence[int], widths: Sequence[int]) -> np.ndarray:
    """Prepend a ``HEADER``-pixel strip with ``labels`` written at the x offsets ``xs``."""
    from PIL import Image, ImageDraw

    out = np.full((HEADER + image.shape[0], image.shape[1], 3), BACKGROUND, np.uint8)
    out[HEADER:] = image
    img = Image.fromarray(out)
    draw = ImageDraw.Draw(img)
    for text, x, w in zip(labels, xs, widths):
        draw.text((x + 2, 1), _fit(draw, str(text), w - 2), fill=(0, 0, 0), font=_font())
    return np.asarray(img).copy()


def panel_offsets(widths: Sequence[int], gap: int = GAP) -> list[int]:
    """The x offsets at which :func:`hstack` places panels of these widths."""
    xs, x = [], gap
    for w in widths:
        xs.append(x)
        x += w + gap
    return xs


def save_png(image: np.ndarray, path: str | os.PathLike) -> Path:
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.ascontiguousarray(image)).save(path, optimize=True)
    return path


def save_gif(frames: Sequence[np.ndarray], path: str | os.PathLike, fps: float = 8.0, time_bar: bool = True) -> Path:
    """An endlessly looping GIF of uint8 (H, W, 3) frames.

    ``time_bar`` adds a ``TIME_BAR``-pixel strip that fills up with time: it shows where the loop is
    and keeps consecutive frames distinct (PIL merges identical frames, which would change the count).
    """
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    images = []
    n = len(frames)
    for t, f in enumerate(frames):
        if time_bar:
            bar = np.full((TIME_BAR, f.shape[1], 3), 220, np.uint8)
            bar[:, :max(1, round(f.shape[1] * (t + 1) / n))] = (40, 40, 40)
            f = np.concatenate([f, bar], axis=0)
        # a fast octree palette per frame (local colour tables): ~40x faster than PIL's default median cut
        images.append(Image.fromarray(np.ascontiguousarray(f)).quantize(256, method=Image.Quantize.FASTOCTREE))
    images[0].save(path, save_all=True, append_images=images[1:], duration=int(round(1000 / fps)), loop=0,
                   optimize=False)
    return path


# --------------------------------------------------------------------------------------------------
# Videos
# --------------------------------------------------------------------------------------------------

def expand_videos(paths: Sequence[str | os.PathLike]) -> list[Path]:
    """Distinct video files from ``paths``; a directory stands for its video files (sorted)."""
    from vssl.data.video import VIDEO_EXTENSIONS

    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.suffix.lower() in VIDEO_EXTENSIONS)
            if not found:
                raise VsslError(f"{p}: no video files ({', '.join(VIDEO_EXTENSIONS)}) in this directory")
            out.extend(found)
        elif p.is_file():
            out.append(p)
        else:
            raise VsslError(f"--videos: {p}: no such file or directory")
    return list(dict.fromkeys(out))  # a file named twice (or also through its folder) is one video


def load_clip(path: str | os.PathLike, data: DataConfig) -> torch.Tensor:
    """The evaluation clip of a video as the recipe's data config samples it: ``num_frames`` frames at
    ``stride`` from the middle of the video (cycled when it is short), short side resized to
    ``load_size`` while decoding, centre crop ``crop_size`` (``EvalTransform`` with
    ``short_side = load_size``). Returns uint8 (C, T, S, S)."""
    import torch

    from vssl.data import sampling
    from vssl.data.crops import center_crop
    from vssl.data.video import VideoReader

    with VideoReader(path, data.backend, data.decoder_threads, short_side=data.load_size) as reader:
        span = sampling.clip_span(data.num_frames, data.stride)
        start = max(reader.num_frames - span, 0) // 2
        idx = sampling.stride_clip(start, data.num_frames, data.stride, reader.num_frames)
        frames = reader.get_frames(idx)  # (T, H, W, C)
    clip = frames.permute(3, 0, 1, 2).unsqueeze(0)
    return center_crop(clip, data.crop_size)[0].to(torch.uint8).contiguous()


def readable_clips(files: Sequence[Path], data: DataConfig, skipped: list[tuple[str, str]]):
    """Yield ``(path, name, clip)`` (``load_clip``) for every readable video of ``files``; an unreadable
    one is appended to ``skipped`` as (path, reason), announced on stderr, and the others go on.
    ``name`` is the file's :func:`clip_names` entry, so output names do not shift past a skipped file."""
    import sys

    from vssl.data.video import VideoDecodeError

    for path, name in zip(files, clip_names(files)):
        try:
            clip = load_clip(path, data)
        except VideoDecodeError as e:
            skipped.append((str(path), e.reason))
            print(f"vssl: skipping {path}: {e.reason}", file=sys.stderr)
            continue
        yield path, name, clip


def require_some(done: int, skipped: list[tuple[str, str]], what: str) -> None:
    """A ``VsslError`` naming the skipped videos when none of them gave a clip."""
    if not done:
        raise VsslError(f"{what}: none of the {len(skipped)} videos could be read "
                        f"({'; '.join(f'{p}: {r}' for p, r in skipped[:3])})")


def clip_config(data: DataConfig, frames: int | None = None, stride: int | None = None,
                size: int | None = None) -> DataConfig:
    """A copy of a run's data config with the clip options of the commands applied: ``frames``
    (``num_frames``), ``stride``, ``size`` (``crop_size``; ``load_size`` keeps the run's ratio to it)."""
    import copy

    data = copy.deepcopy(data)
    if frames:
        data.num_frames = int(frames)
    if stride:
        data.stride = int(stride)
    if size:
        data.load_size = max(int(size), round(int(size) * data.load_size / max(data.crop_size, 1)))
        data.crop_size = int(size)
    return data


def clip_names(videos: Sequence[Path]) -> list[str]:
    """File-name stems made unique with an index prefix (``00_name``) for output files."""
    return [f"{i:02d}_{p.stem}" for i, p in enumerate(videos)]


# --------------------------------------------------------------------------------------------------
# Checkpoints of `vssl pretrain` runs
# --------------------------------------------------------------------------------------------------

def run_config_from_dict(data: dict, source: str) -> RunConfig:
    """A validated ``RunConfig`` from the ``"config"`` dict a training checkpoint carries (the same
    validation as ``vssl pretrain --config``)."""
    from vssl.config import config_from_dict

    return config_from_dict(data, f"{source}: the embedded run config")


@dataclass
class RunCheckpoint:
    """A checkpoint file with what is known about the run that wrote it."""

    path: Path
    state: dict | None  # the file's content when it is a training checkpoint ({"model", "config", ...})
    cfg: RunConfig | None  # the run's config (embedded, or config.yaml next to the file)

    @property
    def method_state(self) -> dict | None:
        return self.state.get("model") if self.state else None

    @property
    def name(self) -> str:
        """A short label: the run directory's name (and the method), else the file's stem."""
        run = self.path.parent.parent if self.path.parent.name == "checkpoints" else self.path.parent
        base = run.name if self.path.stem in ("backbone", "final", "last") or self.path.stem.startswith("step_") \
            else self.path.stem
        return f"{base} ({self.cfg.method.name})" if self.cfg is not None else base


def read_run_checkpoint(path: str | os.PathLike) -> RunCheckpoint:
    """Read a checkpoint written by ``vssl pretrain``/``finetune``.

    ``path`` may be a run directory (``final.pt``, else ``checkpoints/last.pt``, else ``backbone.pt``),
    a training checkpoint (``final.pt``, ``checkpoints/*.pt``: method state + config) or an exported
    ``backbone.pt`` (its config is read from ``config.yaml`` beside it when present).
    """
    from vssl.config import load_config
    from vssl.serialization import load_checkpoint

    path = Path(path)
    if path.is_dir():
        for candidate in ("final.pt", "checkpoints/last.pt", "backbone.pt"):
            if (path / candidate).is_file():
                path = path / candidate
                break
        else:
            raise CheckpointError(f"{path}: no final.pt, checkpoints/last.pt or backbone.pt in this run directory")
    obj = load_checkpoint(path)  # weights_only; raises CheckpointError with the file name
    if isinstance(obj.get("model"), dict) and isinstance(obj.get("config"), dict):
        return RunCheckpoint(path, obj, run_config_from_dict(obj["config"], str(path)))
    cfg = None
    for near in (path.parent / "config.yaml", path.parent.parent / "config.yaml"):
        if near.is_file():
            cfg = load_config(near)
            break
    return RunCheckpoint(path, None, cfg)


def build_method_from_checkpoint(ckpt: RunCheckpoint, device: Any = "cpu"):
    """The whole method of a training checkpoint (backbone, decoder, prototypes, ...), weights loaded
    strictly, in eval mode on ``device``."""
    from vssl.engine.run import build_backbone
    from vssl.methods import build_method

    if ckpt.method_state is None or ckpt.cfg is None:
        raise CheckpointError(f"{ckpt.path}: not a training checkpoint; pass a run's final.pt or "
                              "checkpoints/last.pt (they hold the method, e.g. VideoMAE's decoder), or its directory")
    cfg = ckpt.cfg
    cfg.model.checkpoint = ""  # the weights come from the checkpoint itself
    method = build_method(cfg, build_backbone(cfg))
    missing, unexpected = method.load_state_dict(ckpt.method_state, strict=False)
    if missing or unexpected:
        raise CheckpointError(f"{ckpt.path}: does not match method {cfg.method.name}: missing {missing[:5]}, "
                              f"unexpected {unexpected[:5]}")
    return method.to(device).eval()


def save_rows(rows: Sequence[np.ndarray], labels: Sequence[str], out_dir: Path, name: str, step: int = 1) -> dict:
    """``name.png`` (one labelled row per (T, S, S, 3) stack, at most 8 frames ``step`` apart) and
    ``name.gif`` (every frame, the stacks side by side under their labels); returns both paths."""
    t, s = rows[0].shape[:2]
    cols = pick_frames(t, 8, step=step)
    z = zoom_for(s, 96)
    png = save_png(grid([list(upscale(r[cols], z)) for r in rows], labels, [f"t={f}" for f in cols]),
                   Path(out_dir) / f"{name}.png")
    z = zoom_for(s, 128)
    big = [upscale(r, z) for r in rows]
    xs = panel_offsets([s * z] * len(big))
    gif = save_gif([with_header(hstack([b[f] for b in big]), labels, xs, [s * z] * len(big)) for f in range(t)],
                   Path(out_dir) / f"{name}.gif")
    return {"png": png, "gif": gif}

