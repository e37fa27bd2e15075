"""Vectorised numpy rendering of SynthSEVERE videos: backgrounds, textured objects, camera.

Everything is float32 in [0, 1] until ``to_uint8``. Objects are drawn analytically: for every
frame the pixel grid is mapped into the object's own coordinates (translate, rotate, scale), where
a shape function gives coverage and a texture function gives colour. Because the texture lives in
object coordinates it rotates with the object, so a spinning disk is visibly spinning.

Lessons of the pilot (reference/pilot-synthetic-tubelet.md) are built in: objects have a radius
of 11-19 % of the frame side (a 32 px frame gets 7-12 px wide objects, not 3-5 px; slow
distractors 8-12 %), and the backgrounds have moderate contrast (std ~0.06-0.10) so they do not swamp pooled features.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vssl.data.synth.motions import Track

SHAPES = ("disk", "square", "triangle", "cross", "ellipse", "star")
TEXTURES = ("stripes", "checker", "halves", "rings")


@dataclass
class Appearance:
    """How an object looks; drawn independently of any label."""

    shape: str
    texture: str
    color_a: np.ndarray  # (3,) float
    color_b: np.ndarray
    radius: float        # normalised (fraction of the frame side)
    freq: float          # texture frequency in object units


def random_color(rng, palette: str, avoid: np.ndarray | None = None, min_dist=0.35) -> np.ndarray:
    """A colour from a domain palette, at least ``min_dist`` (RGB distance) from ``avoid``.

    The distance constraint keeps objects visible on their background; it depends on the
    background only, never on the label.
    """
    for _ in range(50):
        if palette == "saturated":          # Domain B: bright leotard colours
            c = np.zeros(3)
            c[rng.integers(3)] = rng.uniform(0.8, 1.0)
            c[rng.integers(3)] += rng.uniform(0.0, 0.6)
            c = np.clip(c + rng.uniform(0, 0.15), 0, 1)
        elif palette == "muted":            # Domain A: everyday objects, desaturated
            g = rng.uniform(0.15, 0.9)
            c = np.clip(g + rng.normal(0, 0.12, 3), 0, 1)
        else:                               # source / others: anything
            c = rng.uniform(0.0, 1.0, 3)
        if avoid is None or np.linalg.norm(c - avoid) >= min_dist:
            return c.astype(np.float32)
    return np.clip(1.0 - avoid, 0, 1).astype(np.float32)


def random_appearance(rng, palette: str, bg_mean: np.ndarray, radius=(0.11, 0.19)) -> Appearance:
    a = random_color(rng, palette, bg_mean)
    b = random_color(rng, palette, bg_mean)
    # the two texture colours must differ, otherwise rotation would be invisible
    while np.linalg.norm(a - b) < 0.3:
        b = random_color(rng, palette, bg_mean)
    return Appearance(shape=str(rng.choice(SHAPES)), texture=str(rng.choice(TEXTURES)), color_a=a,
                      color_b=b, radius=float(rng.uniform(*radius)), freq=float(rng.uniform(1.5, 2.5)))


# --- backgrounds ------------------------------------------------------------------------------

def _smooth_noise(rng, size: int, cells: int, channels=3) -> np.ndarray:
    """Low-frequency colour noise: a cells x cells grid bilinearly upsampled to size x size."""
    from scipy.ndimage import zoom

    grid = rng.normal(0, 1, (cells + 1, cells + 1, channels)).astype(np.float32)
    out = zoom(grid, (size / (cells + 1), size / (cells + 1), 1), order=1, mode="nearest")
    return out[:size, :size]


def _grating(size: int, freq: float, theta: float, phase: float) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    return np.sin(2 * np.pi * freq * (xx * np.cos(theta) + yy * np.sin(theta)) + phase)


def background(rng, domain: str, size: int) -> np.ndarray:
    """One static background canvas (size, size, 3) for a domain.

    source   : mean colour anywhere, smooth colour blobs + a faint grating (distinctive per video,
               as Kinetics scenes are: instance discrimination can latch onto it).
    domain_a : greyish/warm palette, fine-grained isotropic noise texture (table tops, walls).
    domain_b : dark arena, vertical light gradient of random direction, almost no texture.
    domain_c : flat wall with a few large furniture-like rectangles (indoor, Charades-like).
    """
    if domain == "source":
        mean = rng.uniform(0.2, 0.8, 3)
        img = mean + 0.07 * _smooth_noise(rng, size, int(rng.integers(2, 5)))
        img += 0.05 * _grating(size, rng.uniform(1.5, 4), rng.uniform(0, np.pi), rng.uniform(0, 6.3))[..., None] \
            * rng.uniform(0.3, 1.0, 3)
    elif domain == "domain_a":
        g = rng.uniform(0.35, 0.7)
        mean = np.clip(g + np.array([0.08, 0.03, -0.05]) * rng.uniform(0, 1.5) + rng.normal(0, 0.03, 3), 0, 1)
        img = mean + 0.05 * _smooth_noise(rng, size, max(4, size // 4), 1) + 0.03 * _smooth_noise(rng, size, 2)
    elif domain == "domain_b":
        base = rng.uniform(0.08, 0.25) + rng.normal(0, 0.03, 3) + np.array([0.0, 0.02, 0.08])
        theta = rng.uniform(0, 2 * np.pi)
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
        ramp = (xx - 0.5) * np.cos(theta) + (yy - 0.5) * np.sin(theta)
        img = base + 0.12 * ramp[..., None] + 0.02 * _smooth_noise(rng, size, 3)
    elif domain == "domain_c":
        wall = rng.uniform(0.3, 0.75, 3)
        img = np.broadcast_to(wall, (size, size, 3)).copy() + 0.02 * _smooth_noise(rng, size, 3)
        for _ in range(int(rng.integers(2, 4))):
            x0, y0 = rng.integers(0, size, 2)
            w, h = rng.integers(size // 6, size // 2, 2)
            img[y0:y0 + h, x0:x0 + w] = np.clip(wall + rng.uniform(-0.15, 0.15, 3), 0, 1)
    else:
        raise ValueError(f"unknown domain {domain!r}")
    return np.clip(img, 0, 1).astype(np.float32)


def camera_path(rng, T: int, amplitude: float, handheld: bool) -> tuple[np.ndarray, np.ndarray]:
    """Camera offset per frame (normalised): a slow pan, plus jitter when ``handheld``."""
    t = np.linspace(0, 1, T)
    a = rng.uniform(0, 2 * np.pi)
    dx, dy = amplitude * t * np.cos(a), amplitude * t * np.sin(a)
    if handheld:
        dx = dx + amplitude * 0.3 * np.sin(2 * np.pi * rng.uniform(1, 2) * t + rng.uniform(0, 6.3))
        dy = dy + amplitude * 0.3 * np.sin(2 * np.pi * rng.uniform(1, 2) * t + rng.uniform(0, 6.3))
    return dx - dx.mean(), dy - dy.mean()


def background_frames(canvas: np.ndarray, size: int, cam_x: np.ndarray, cam_y: np.ndarray) -> np.ndarray:
    """Crop a (T, size, size, 3) view from a larger canvas at sub-pixel camera offsets (bilinear).

    One slice per frame (cheap views) instead of a gather over every pixel.
    """
    margin = (canvas.shape[0] - size) / 2
    out = np.empty((len(cam_x), size, size, 3), np.float32)
    hi = canvas.shape[0] - size - 1
    for t, (cx, cy) in enumerate(zip(cam_x, cam_y)):
        x, y = margin + cx * size, margin + cy * size
        x0, y0 = int(np.clip(np.floor(x), 0, hi)), int(np.clip(np.floor(y), 0, hi))
        fx, fy = np.float32(np.clip(x - x0, 0, 1)), np.float32(np.clip(y - y0, 0, 1))
        win = canvas[y0:y0 + size + 1, x0:x0 + size + 1]
        rows = win[:, :-1] * (1 - fx) + win[:, 1:] * fx
        out[t] = rows[:-1] * (1 - fy) + rows[1:] * fy
    return out


# --- objects ----------------------------------------------------------------------------------

def _shape_distance(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """A distance-like function that equals 1 on the shape's outline (units of the radius)."""
    if shape == "disk":
        return np.hypot(u, v)
    if shape == "square":
        return np.maximum(np.abs(u), np.abs(v)) * 1.15
    if shape == "ellipse":
        return np.hypot(u * 0.85, v * 1.45)
    if shape == "triangle":  # equilateral, pointing up in object coordinates
        return np.maximum(np.maximum(-v * 2, v + np.abs(u) * 1.732), 0) * 0.95 + 1e-6
    if shape == "cross":
        arm = np.minimum(np.maximum(np.abs(u), np.abs(v) * 2.6), np.maximum(np.abs(u) * 2.6, np.abs(v)))
        return arm * 1.05
    if shape == "star":
        ang = np.arctan2(v, u)
        return np.hypot(u, v) / (0.75 + 0.25 * np.cos(5 * ang))
    raise ValueError(f"unknown shape {shape!r}")


def _texture(texture: str, u: np.ndarray, v: np.ndarray, freq: float) -> np.ndarray:
    """Blend weight in [0, 1] between the two colours, defined in object coordinates."""
    k = np.pi * freq
    if texture == "stripes":
        w = np.sin(k * u)
    elif texture == "checker":
        w = np.sin(k * u) * np.sin(k * v) * 2
    elif texture == "halves":
        w = u * 4
    elif texture == "rings":   # off-centre rings: still shows rotation
        w = np.sin(k * np.hypot(u - 0.45, v))
    else:
        raise ValueError(f"unknown texture {texture!r}")
    return np.clip(0.5 + 2.0 * w, 0, 1)


def _object_window(app: Appearance, track: Track, S: int):
    """The window the object visits during the video and the object coordinates of its pixels:
    ``((y0, y1, x0, x1), u, v, r)`` with u, v, r of shape (T, h, w) / (T, 1, 1), or None if outside."""
    reach = app.radius * track.scale * 1.6 + 1.5 / S        # bounding radius of every shape + AA edge
    x0, x1 = (np.clip([np.min(track.x - reach), np.max(track.x + reach)], 0, 1) * S).astype(int) + [0, 1]
    y0, y1 = (np.clip([np.min(track.y - reach), np.max(track.y + reach)], 0, 1) * S).astype(int) + [0, 1]
    x1, y1 = min(x1, S), min(y1, S)
    if x1 <= x0 or y1 <= y0:
        return None
    gx = (np.arange(x0, x1, dtype=np.float32) + 0.5) / S
    gy = (np.arange(y0, y1, dtype=np.float32) + 0.5) / S
    r = (app.radius * track.scale).astype(np.float32)[:, None, None]           # (T,1,1)
    dx = (gx[None, None, :] - track.x[:, None, None].astype(np.float32)) / r
    dy = (gy[None, :, None] - track.y[:, None, None].astype(np.float32)) / r
    c = np.cos(track.angle).astype(np.float32)[:, None, None]
    s = np.sin(track.angle).astype(np.float32)[:, None, None]
    u = c * dx + s * dy          # rotate the grid by -angle: the object turns by +angle
    v = -s * dx + c * dy
    return (y0, y1, x0, x1), u, v, r


def _coverage(app: Appearance, u: np.ndarray, v: np.ndarray, r: np.ndarray, S: int) -> np.ndarray:
    """Alpha in [0, 1] of the object at object coordinates u, v: ~1 px soft edge."""
    d = _shape_distance(app.shape, u, v)
    return np.clip((1.0 - d) * r * S + 0.5, 0, 1)


def draw_object(frames: np.ndarray, app: Appearance, track: Track) -> np.ndarray:
    """Alpha-composite one object over (T, S, S, 3) frames in place, anti-aliased edges.

    Only the window the object visits during the video is computed (often a fraction of the frame).
    """
    S = frames.shape[1]
    win = _object_window(app, track, S)
    if win is None:
        return frames
    (y0, y1, x0, x1), u, v, r = win
    alpha = _coverage(app, u, v, r, S)[..., None]
    w = _texture(app.texture, u, v, app.freq)[..., None]
    color = app.color_a * (1 - w) + app.color_b * w
    view = frames[:, y0:y1, x0:x1]
    view *= 1 - alpha
    view += alpha * color
    return frames


def object_ids(T: int, size: int, objects: list[tuple[Appearance, Track]],
               camera: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Per-frame object-id masks uint8 (T, S, S) of a video ``render`` draws: object i (in drawing
    order) gets id i + 1 where its coverage is at least 0.5, later objects over earlier ones, 0 is the
    background. Uses no random numbers, so asking for masks never changes the video."""
    ids = np.zeros((T, size, size), np.uint8)
    cx, cy = camera
    for i, (app, track) in enumerate(objects):
        win = _object_window(app, track.shifted(-cx, -cy), size)
        if win is None:
            continue
        (y0, y1, x0, x1), u, v, r = win
        view = ids[:, y0:y1, x0:x1]
        view[_coverage(app, u, v, r, size) >= 0.5] = i + 1
    return ids


def to_uint8(frames: np.ndarray, rng, noise: float = 0.01) -> np.ndarray:
    """Add a little sensor noise and quantise."""
    if noise:
        frames = frames + noise * rng.standard_normal(frames.shape, dtype=np.float32)
    return (np.clip(frames, 0, 1) * 255 + 0.5).astype(np.uint8)


def canvas_margin(size: int) -> int:
    """Extra border of a background canvas so the camera can pan without leaving it."""
    return int(np.ceil(0.1 * size)) + 1


def render(rng, canvas: np.ndarray, size: int, objects: list[tuple[Appearance, Track]],
           camera: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Render a whole video over a background canvas, returns uint8 (T, S, S, 3).

    ``camera`` is the per-frame camera offset (normalised); the world, objects included, moves
    opposite to it. A static camera is simply zeros (the centre crop of the canvas).
    """
    cx, cy = camera
    if not np.any(cx) and not np.any(cy):
        m = (canvas.shape[0] - size) // 2
        frames = np.broadcast_to(canvas[m:m + size, m:m + size], (len(cx), size, size, 3)).copy()
    else:
        frames = background_frames(canvas, size, cx, cy).astype(np.float32)
    for app, track in objects:
        draw_object(frames, app, track.shifted(-cx, -cy))
    return to_uint8(frames, rng)
