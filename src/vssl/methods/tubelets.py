"""Synthetic tubelets (Thoker et al., "Tubelet-Contrastive Self-Supervision for Video-Efficient
Generalization", ICCV 2023): image patches cut from clip 1 that move and deform over time and are
pasted, identically, onto two clips of different videos. The pair is a positive for contrastive
learning, so the network must match the tubelets' motion, not the backgrounds.

Everything is batched tensor code on the clips' device. Each frame's placement of a tubelet is one
affine map (scale to the box, shear, rotate about the centre, translate); every output pixel is
mapped back into the patch and sampled with ``F.grid_sample``, and the alpha mask is evaluated
analytically in patch coordinates. A patch that leaves the frame is simply cut by the frame border,
which fixes by construction the reference's misaligned paste of clipped patches
(tubelet-contrast.md §2.10). Sizes, speeds and trajectory extents are fractions of the frame, so the
same config works at 32 px and at 112 px (the reference hard-codes 112/224 px).

Reference: ``fmthoker/tubelet-contrast: pyvrl/models/pretraining/tubeletcontrast/tubelets.py`` and
``tubelet_transformation.py`` (the numbers below are theirs, given at 112 px).
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from vssl.errors import ConfigError

MOTIONS = ("none", "linear", "nonlinear")
TRANSFORMS = ("none", "scale", "shear", "rotation")


@dataclass
class TubeletConfig:
    """How tubelets are drawn. Defaults are the released configuration (2 tubelets, non-linear motion,
    rotation); lengths are fractions of the frame's short side (reference pixels / 112)."""

    num_tubelets: int = 2  # paper ablates 1 / 2 / 3
    # box shape: scale x aspect anchors {16,24,28,32,48,64} px at 112 px, ratios 0.5..2, jitter exp(U(-.18,.18))
    scales: list[float] = field(default_factory=lambda: [0.1429, 0.2143, 0.25, 0.2857, 0.4286, 0.5714])
    ratios: list[float] = field(default_factory=lambda: [0.5, 0.67, 0.75, 1.0, 1.33, 1.5, 2.0])
    scale_jitter: float = 0.18
    # alpha mask: rectangle / ellipse / rhombus, soft edge with p 0.5, opacity U(0.8, 1) at key frames
    shape_probs: list[float] = field(default_factory=lambda: [0.5, 0.35, 0.15])
    soft_edge_prob: float = 0.5
    soft_edge_range: list[float] = field(default_factory=lambda: [0.30, 0.45])
    opacity: list[float] = field(default_factory=lambda: [0.8, 1.0])
    # motion: none (static box) | linear (constant velocity) | nonlinear (Gaussian-smoothed random path)
    motion: str = "nonlinear"
    traj_points: int = 48  # random control values per axis before smoothing
    traj_sigma: float = 8.0  # Gaussian smoothing, in control-point units
    traj_extent: list[float] = field(default_factory=lambda: [0.1786, 0.7946])  # S ~ U{20..89} px at 112
    linear_velocity: float = 0.0446  # max |v| per axis and frame (CtP loc_velocity 5 px at 112)
    # per-frame transformation(s): none | scale | shear | rotation, or several joined with '+'
    transform: str = "rotation"
    rotation_velocity: float = 6.0  # degrees per frame (<= 90 deg over 16 frames)
    shear_velocity: float = 0.066  # shear factor per frame
    scale_velocity: float = 0.04  # log box size per frame (the reference's size_velocity is ~0)
    key_frame_probs: list[float] = field(default_factory=lambda: [0.5, 0.3, 0.2])  # 0/1/2 inner key frames
    ease_probs: list[float] = field(default_factory=lambda: [0.7, 0.15, 0.15])  # uniform/accelerate/decelerate
    # control of the pilot study: view 2's patches are cut from clip 2 (same boxes, same trajectory)
    appearance_control: bool = False

    def transforms(self) -> set[str]:
        names = {t.strip() for t in self.transform.replace(",", "+").split("+") if t.strip()}
        bad = names - set(TRANSFORMS)
        if bad or self.motion not in MOTIONS or self.num_tubelets < 1:
            raise ConfigError(f"tubelets: motion must be one of {MOTIONS}, transform a '+'-joined subset of "
                              f"{TRANSFORMS}, num_tubelets >= 1; got motion={self.motion!r}, "
                              f"transform={self.transform!r}, num_tubelets={self.num_tubelets}")
        return names - {"none"}


def _uniform(shape, lo, hi, device) -> torch.Tensor:
    return torch.rand(shape, device=device) * (hi - lo) + lo


def sample_key_frames(batch: int, frames: int, probs: list[float], device) -> torch.Tensor:
    """Key-frame masks (B, T): first and last frame plus 0/1/2 jittered inner ticks (§2.7)."""
    k = torch.multinomial(torch.tensor(probs, device=device, dtype=torch.float), batch, replacement=True)
    mask = torch.zeros(batch, frames, dtype=torch.bool, device=device)
    mask[:, 0] = mask[:, -1] = True
    rows = torch.arange(batch, device=device)
    for inner in range(1, len(probs)):
        avg = frames / (inner + 1)
        j = int(avg // 3)
        for i in range(1, inner + 1):
            jitter = torch.randint(-j, j, (batch,), device=device) if j > 0 else torch.zeros(batch, device=device)
            pos = (int(avg * i) + jitter).long().clamp(0, frames - 1)
            mask[rows, pos] |= k == inner
    return mask


def interpolate_key_frames(values: torch.Tensor, keys: torch.Tensor, ease: torch.Tensor | None = None) -> torch.Tensor:
    """Fill the frames between key frames (§2.7 ``extend_key_frame_to_all``).

    Args:
        values: (B, N, T), meaningful at key frames only.
        keys: (B, T) bool key-frame mask (frames 0 and T-1 set).
        ease: optional (B, N, T) int per segment (read at the segment's end): 0 uniform,
            1 accelerate (v0 + a t^2 / 2), 2 decelerate; None = uniform.

    Returns:
        (B, N, T) values at every frame.
    """
    b, n, t = values.shape
    idx = torch.arange(t, device=values.device).expand(b, t)
    prev = torch.where(keys, idx, -1).cummax(dim=1).values
    nxt = torch.where(keys, idx, t).flip(1).cummin(dim=1).values.flip(1)
    f = ((idx - prev) / (nxt - prev).clamp(min=1)).unsqueeze(1).expand(b, n, t)
    if ease is not None:
        kind = ease.gather(2, nxt.unsqueeze(1).expand(b, n, t))
        f = torch.where(kind == 1, f * f, torch.where(kind == 2, 1 - (1 - f) ** 2, f))
    v0 = values.gather(2, prev.unsqueeze(1).expand(b, n, t))
    v1 = values.gather(2, nxt.unsqueeze(1).expand(b, n, t))
    return v0 + (v1 - v0) * f


def random_walk(batch: int, num: int, frames: int, velocity: float, cfg: TubeletConfig, device) -> torch.Tensor:
    """A smooth random trajectory starting at 0: at each key frame add U(-v*d, v*d), d = frames since
    the previous key frame; interpolated in 'random' easing mode (§2.7-2.8). Returns (B, N, T)."""
    keys = sample_key_frames(batch, frames, cfg.key_frame_probs, device)
    idx = torch.arange(frames, device=device).expand(batch, frames)
    last = torch.where(keys, idx, -1).cummax(dim=1).values  # last key frame <= t
    gap = (idx - torch.cat([last.new_zeros(batch, 1), last[:, :-1]], dim=1)).float()  # frames since previous key
    steps = _uniform((batch, num, frames), -1.0, 1.0, device) * velocity * gap.unsqueeze(1)
    steps = steps * keys.unsqueeze(1) * (idx > 0).unsqueeze(1)
    ease = torch.multinomial(torch.tensor(cfg.ease_probs, device=device, dtype=torch.float),
                             batch * num * frames, replacement=True).view(batch, num, frames)
    return interpolate_key_frames(steps.cumsum(dim=2), keys, ease)


def _gaussian_smooth(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """1-D Gaussian filter along the last dim with reflect padding (scipy's gaussian_filter1d)."""
    radius = min(int(4 * sigma + 0.5), x.shape[-1] - 1)
    k = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    k = torch.exp(-0.5 * (k / sigma) ** 2)
    shape = x.shape
    y = F.pad(x.reshape(-1, 1, shape[-1]), (radius, radius), mode="reflect")
    return F.conv1d(y, (k / k.sum()).view(1, 1, -1)).reshape(shape)


def trajectories(batch: int, num: int, frames: int, size: torch.Tensor, height: int, width: int,
                 cfg: TubeletConfig, device) -> torch.Tensor:
    """Box centres (B, N, T, 2) in pixels (x, y) for ``cfg.motion``; ``size`` (B, N, 2) box (w, h) px."""
    base = min(height, width)
    frame = torch.tensor([width, height], device=device, dtype=torch.float)
    if cfg.motion == "none":  # static: anywhere the whole box fits
        lo = (size / 2).clamp(max=frame / 2)
        centre = lo + torch.rand(batch, num, 2, device=device) * (frame - 2 * lo)
        return centre.unsqueeze(2).expand(batch, num, frames, 2)
    if cfg.motion == "linear":  # constant velocity; the whole path of the centre stays in the frame
        v = _uniform((batch, num, 2), -cfg.linear_velocity, cfg.linear_velocity, device) * base
        span = (v * (frames - 1)).clamp(-frame, frame)
        lo, hi = (-span).clamp(min=0), frame - span.clamp(min=0)
        start = lo + torch.rand(batch, num, 2, device=device) * (hi - lo)
        t = torch.arange(frames, device=device, dtype=torch.float).view(1, 1, frames, 1)
        return start.unsqueeze(2) + span.unsqueeze(2) * t / max(frames - 1, 1)
    # nonlinear (§2.5): smoothed uniform noise, min-max normalised, one extent S for both axes
    pts = _gaussian_smooth(torch.rand(batch, num, 2, cfg.traj_points, device=device), cfg.traj_sigma)
    lo, hi = pts.amin(-1, keepdim=True), pts.amax(-1, keepdim=True)
    pts = (pts - lo) / (hi - lo).clamp(min=1e-6)
    extent = _uniform((batch, num, 1, 1), cfg.traj_extent[0], cfg.traj_extent[1], device) * base
    offset = torch.rand(batch, num, 2, 1, device=device) * (frame.view(1, 1, 2, 1) - extent).clamp(min=0)
    pick = torch.linspace(0, cfg.traj_points - 1, frames, device=device).round().long()
    return (offset + extent * pts)[..., pick].transpose(2, 3)


def _placement(half: torch.Tensor, angle: torch.Tensor, shx: torch.Tensor, shy: torch.Tensor):
    """The 2x2 map ``M_t = R(angle) @ Shy @ Shx @ diag(half)`` as (m00, m01, m10, m11), each (B, N, T)."""
    th = angle * math.pi / 180
    cos, sin = th.cos(), th.sin()
    a, b, c, d = torch.ones_like(shx), shx, shy, 1 + shy * shx  # Shy @ Shx = [[1, shx], [shy, 1 + shy*shx]]
    m00, m01 = (cos * a - sin * c) * half[..., 0], (cos * b - sin * d) * half[..., 1]
    m10, m11 = (sin * a + cos * c) * half[..., 0], (sin * b + cos * d) * half[..., 1]
    return m00, m01, m10, m11


def patch_coordinates(centres: torch.Tensor, half: torch.Tensor, angle: torch.Tensor, shx: torch.Tensor,
                      shy: torch.Tensor, height: int, width: int, origin: torch.Tensor | None = None) -> torch.Tensor:
    """Where every output pixel falls in each tubelet's patch, for every frame.

    Frame t places the patch by ``x = c_t + M_t u`` with ``M_t = R(angle) @ Shy @ Shx @ diag(half)``
    (u in [-1, 1]^2 covers the patch). Inverting the 2x2 map for every pixel centre gives u; pixels
    with |u| > 1 lie outside the tubelet.

    Args:
        centres: (B, N, T, 2) box centres in pixels (x, y).
        half: (B, N, T, 2) half box sizes in pixels.
        angle: (B, N, T) degrees (positive = clockwise on screen); shx, shy: (B, N, T) shear factors.
        height, width: the frame, or with ``origin`` the window, in pixels.
        origin: optional (B, N, T, 2) integer-valued float pixel (x, y) of each window's top-left
            pixel: u is then computed for that ``height`` x ``width`` window of the frame only
            (the same values as the full frame's at those pixels).

    Returns:
        u: (B, N, T, H, W, 2).
    """
    m00, m01, m10, m11 = _placement(half, angle, shx, shy)
    det = (m00 * m11 - m01 * m10)[..., None, None]
    dev = centres.device
    xs = torch.arange(width, device=dev, dtype=torch.float) + 0.5
    ys = torch.arange(height, device=dev, dtype=torch.float) + 0.5
    if origin is None:
        dx = xs.view(1, 1, 1, 1, width) - centres[..., 0, None, None]  # (B, N, T, 1, W)
        dy = ys.view(1, 1, 1, height, 1) - centres[..., 1, None, None]  # (B, N, T, H, 1)
    else:  # integer + half-integer pixel centres are exact in float32: the same dx, dy as the full frame
        dx = (origin[..., 0, None, None] + xs.view(width)) - centres[..., 0, None, None]
        dy = (origin[..., 1, None, None] + ys.view(height, 1)) - centres[..., 1, None, None]
    e = lambda m: m[..., None, None]  # noqa: E731  (B, N, T) -> (B, N, T, 1, 1)
    return torch.stack([(e(m11) * dx - e(m01) * dy) / det, (-e(m10) * dx + e(m00) * dy) / det], -1)


def tubelet_windows(centres: torch.Tensor, half: torch.Tensor, angle: torch.Tensor, shx: torch.Tensor,
                    shy: torch.Tensor, height: int, width: int, buckets: tuple[float, ...] = (0.5, 0.8, 1.0)
                    ) -> tuple[torch.Tensor, list[tuple[list[int], int, int]]]:
    """Windows that hold every pixel a tubelet can cover, grouped into a few fixed sizes.

    The placed patch ``c_t + M_t [-1, 1]^2`` lies within ``c_t +- (|m00| + |m01|, |m10| + |m11|)``;
    pixel i (centre i + 0.5) can be inside only if it lies in that box. Tubelets are sorted by their
    largest box over the clip and cut into ``buckets`` (cumulative fractions of the tubelets); each
    bucket gets the window size of its largest box (+ 3 px margin, at most the frame), so one large
    rotated tubelet does not size every window of the batch. One host sync. Each frame's window is
    shifted to lie inside the frame.

    Args:
        centres, half, angle, shx, shy: as for :func:`patch_coordinates`, (B, N, T, ...).

    Returns:
        origin (B, N, T, 2) float top-left pixel (x, y) of each tubelet's window per frame (for its
        bucket's size), and per bucket (flat tubelet indices b * N + n, window height, window width).
    """
    m00, m01, m10, m11 = _placement(half, angle, shx, shy)
    ext = torch.stack([m00.abs() + m01.abs(), m10.abs() + m11.abs()], -1)  # (B, N, T, 2) half extents
    need = (2 * ext.amax(2)).ceil() + 3  # (B, N, 2) window (w, h) per tubelet
    b, n = need.shape[:2]
    flat = need.view(b * n, 2)
    order = (flat[:, 0] * flat[:, 1]).argsort()
    sizes, order = flat[order].tolist(), order.tolist()
    groups, start = [], 0
    for f in buckets:
        end = max(start, min(len(order), math.ceil(f * len(order))))
        if end > start:
            ww = min(width, int(max(sz[0] for sz in sizes[start:end])))
            wh = min(height, int(max(sz[1] for sz in sizes[start:end])))
            groups.append((sorted(order[start:end], key=lambda i: (i % n, i)), wh, ww))  # by slot, then sample
        start = end
    win = torch.zeros(b * n, 2, device=centres.device)
    for items, wh, ww in groups:
        win[items] = torch.tensor([float(ww), float(wh)], device=centres.device)
    limit = torch.tensor([width, height], device=centres.device, dtype=torch.float) - win.view(b, n, 1, 2)
    origin = torch.minimum((centres - ext - 0.5).floor().clamp(min=0), limit)
    return origin, groups


def alpha_shape(u: torch.Tensor, shape: torch.Tensor, soft: torch.Tensor, turn: torch.Tensor) -> torch.Tensor:
    """Alpha in patch coordinates u in [-1, 1]^2 (…, 2): rectangle 0 / ellipse 1 / rhombus 2 (§2.3).

    ``shape``, ``soft`` and ``turn`` broadcast against ``u[..., 0]``. Distances are per-axis normalised
    by the box (the edge is at 0.5); a soft edge ramps from 1 at d = turn to 0 at d = 0.5."""
    d = u.abs() / 2
    dist = torch.where(shape == 0, d.amax(-1), torch.where(shape == 1, d.norm(dim=-1), d.sum(-1)))
    hard = (dist < 0.5).float()
    ramp = ((dist - 0.5) / (turn - 0.5)).clamp(0, 1)
    return torch.where(soft, ramp, hard)


class TubeletSynthesizer:
    """Paste the same random tubelets onto clips and onto clips of *other* videos of the batch.

    Call it on float clips (B, C, T, H, W) on any device; it returns ``(view1, view2, info)``:
    ``view1`` = clip i with its tubelets, ``view2`` = clip ``info["partner"][i]`` (a random
    derangement, so always another sample) with the same tubelets (positions, patch pixels, alphas,
    transformations). Without ``appearance_control`` the tubelet pixels are identical in both views.
    ``info`` holds ``alpha`` (B, N, T, H, W), ``centres`` (B, N, T, 2) px, ``sizes`` (B, N, 2) px,
    ``angle`` (B, N, T) degrees, ``source_frame`` (B, N), ``patches`` (B, N, C, T, h, w) (view 1's
    warped patch colours; with ``window`` a list per window size of (flat tubelet indices b * N + n,
    (G, C, T, h * w) colours of their windows)), ``window`` (B, N, T, 2) the windows' top-left
    pixels (x, y) (None with ``window=False``, where the windows are the whole frame) and
    ``partner`` (B,); tubelets are in drawing order (largest first).
    Pass ``partner`` to choose view 2's backgrounds yourself.

    ``window``: True evaluates coordinates, alpha and texture only in one window per tubelet and frame
    that bounds the placed patch (a few fixed sizes per batch, read with one host sync; tubelets
    grouped by size) and pastes it back; False evaluates the whole frame for every tubelet (the
    reference, the same result up to float rounding). None (default) picks by device, as measured in
    BENCHMARKS.md: windows on the CPU (1.15-1.9x faster), the whole frame on CUDA (H100, batch 32 of
    16x112x112: 8.1 ms whole frame vs 14.2 ms windowed — there the host sync and the many small
    kernels of the windowed path cost more than the arithmetic it saves).
    """

    def __init__(self, cfg: TubeletConfig | None = None, window: bool | None = None):
        self.cfg = cfg or TubeletConfig()
        self.window = window
        self.transforms = self.cfg.transforms()  # validates

    @torch.no_grad()
    def __call__(self, clips: torch.Tensor, partner: torch.Tensor | None = None):
        cfg, dev = self.cfg, clips.device
        clips = clips.float()
        b, c, t, h, w = clips.shape
        n = cfg.num_tubelets
        if partner is None:  # a random cyclic permutation: no sample is paired with itself (B > 1)
            cycle = torch.randperm(b, device=dev)
            partner = torch.empty_like(cycle)
            partner[cycle] = cycle.roll(-1)
        other = clips[partner]

        # box shapes from scale x ratio anchors with independent jitter on each side (§2.2)
        base = min(h, w)
        s = torch.tensor(cfg.scales, device=dev)[torch.randint(len(cfg.scales), (b, n), device=dev)]
        r = torch.tensor(cfg.ratios, device=dev)[torch.randint(len(cfg.ratios), (b, n), device=dev)]
        jit = torch.exp(_uniform((b, n, 2), -cfg.scale_jitter, cfg.scale_jitter, dev))
        size = torch.stack([s * r.sqrt(), s / r.sqrt()], -1) * base * jit
        size = torch.minimum(size.clamp(min=1.0), torch.tensor([w - 1.0, h - 1.0], device=dev).clamp(min=1.0))
        centres = trajectories(b, n, t, size, h, w, cfg, dev)  # (B, N, T, 2)

        # per-frame transformations through key frames (§2.7-2.8); all start from identity at frame 0
        zero = torch.zeros(b, n, t, device=dev)
        angle = random_walk(b, n, t, cfg.rotation_velocity, cfg, dev) if "rotation" in self.transforms else zero
        if "shear" in self.transforms:  # x only, y only or x then y, drawn per sample
            kind = torch.randint(3, (b, 1, 1), device=dev)
            shx = random_walk(b, n, t, cfg.shear_velocity, cfg, dev) * (kind != 1)
            shy = random_walk(b, n, t, cfg.shear_velocity, cfg, dev) * (kind != 0)
        else:
            shx = shy = zero
        if "scale" in self.transforms:
            grow = torch.stack([random_walk(b, n, t, cfg.scale_velocity, cfg, dev) for _ in range(2)], -1).exp()
        else:
            grow = torch.ones(b, n, t, 2, device=dev)
        half = size.unsqueeze(2) * grow / 2  # (B, N, T, 2)
        # tubelets are drawn largest first so that small ones end on top (§2.4): sort them now
        bi = torch.arange(b, device=dev).view(b, 1)
        order = (half[..., 0] * half[..., 1]).mean(2).argsort(dim=1, descending=True)
        size, centres, half, angle, shx, shy = (v[bi, order] for v in (size, centres, half, angle, shx, shy))

        # alpha: shape and soft edge per tubelet, opacity interpolated between key frames
        shape = torch.multinomial(torch.tensor(cfg.shape_probs, device=dev, dtype=torch.float), b * n, True).view(b, n)
        soft = torch.rand(b, n, device=dev) < cfg.soft_edge_prob
        turn = _uniform((b, n), cfg.soft_edge_range[0], cfg.soft_edge_range[1], dev)
        keys = sample_key_frames(b, t, cfg.key_frame_probs, dev)
        opacity = interpolate_key_frames(_uniform((b, n, t), cfg.opacity[0], cfg.opacity[1], dev), keys)
        # static patch texture: the box of a random frame s of clip 1 (or of clip 2 for the control)
        src = torch.randint(t, (b, n), device=dev)

        box_c = centres[bi, torch.arange(n, device=dev).view(1, n), src]  # (B, N, 2)
        # grid_sample coordinates of the source box: 2 * (centre + u * size / 2) / frame - 1, in one pass
        frame = torch.tensor([w, h], device=dev, dtype=torch.float)
        offset, scale = (2 * box_c / frame - 1), size / frame
        view1, view2 = clips.clone(), other  # clips[partner] is already a fresh copy
        use_window = self.window if self.window is not None else dev.type == "cpu"
        if not use_window:  # the whole frame for every tubelet (the reference)
            u = patch_coordinates(centres, half, angle, shx, shy, h, w)  # (B, N, T, H, W, 2)
            view = lambda x: x.view(b, n, 1, 1, 1)  # noqa: E731
            alpha = alpha_shape(u, view(shape), view(soft), view(turn)) * opacity[..., None, None]
            grid = torch.addcmul(offset[:, :, None, None, None], u, scale[:, :, None, None, None]).view(b * n, t * h, w, 2)

            def patches(video: torch.Tensor) -> torch.Tensor:
                frames = video.permute(0, 2, 1, 3, 4)[bi, src].reshape(b * n, c, h, w)
                out = F.grid_sample(frames, grid, mode="bilinear", padding_mode="border", align_corners=False)
                return out.view(b, n, c, t, h, w)

            p1 = patches(clips)
            p2 = patches(other) if cfg.appearance_control else p1
            for k in range(n):  # alpha compositing, one fused lerp per tubelet and view
                a_k = alpha[:, k].unsqueeze(1)  # (B, 1, T, H, W)
                view1.lerp_(p1[:, k], a_k)
                view2.lerp_(p2[:, k], a_k)
            info = {"alpha": alpha, "patches": p1, "window": None}
        else:
            info = self._windowed(clips, other, view1, view2, centres, half, angle, shx, shy, shape, soft, turn,
                                  opacity, src, offset, scale)
        info.update({"centres": centres, "sizes": size, "angle": angle, "source_frame": src, "partner": partner})
        return view1, view2, info

    def _windowed(self, clips, other, view1, view2, centres, half, angle, shx, shy, shape, soft, turn, opacity,
                  src, offset, scale) -> dict:
        """Coordinates, alpha and texture in each tubelet's window (:func:`tubelet_windows`), a few
        window sizes per batch, composited into ``view1``/``view2`` in place in drawing order."""
        b, c, t, h, w = clips.shape
        n, dev = centres.shape[1], clips.device
        origin, groups = tubelet_windows(centres, half, angle, shx, shy, h, w)
        flat = lambda x: x.flatten(0, 1)  # noqa: E731  (B, N, ...) -> (B*N, ...)
        centres, half, angle, shx, shy, origin, opacity = map(flat, (centres, half, angle, shx, shy, origin, opacity))
        shape, soft, turn, offset, scale, src = map(flat, (shape, soft, turn, offset, scale, src))
        frames1 = clips.permute(0, 2, 1, 3, 4)  # (B, T, C, H, W) views
        frames2 = other.permute(0, 2, 1, 3, 4) if self.cfg.appearance_control else None
        out1, out2 = view1.view(-1), view2.view(-1)
        full_alpha = clips.new_zeros(b * n * t * h * w)
        work = []  # per group: items, alpha (G, T, wh*ww), patches, flat pixel index in a frame
        for items, wh, ww in groups:
            it = torch.tensor(items, device=dev)
            o = origin[it]  # (G, T, 2)
            u = patch_coordinates(centres[it], half[it], angle[it], shx[it], shy[it], wh, ww, o)  # (G, T, wh, ww, 2)
            g = len(items)
            alpha = alpha_shape(u, shape[it].view(g, 1, 1, 1), soft[it].view(g, 1, 1, 1), turn[it].view(g, 1, 1, 1))
            alpha = (alpha * opacity[it][..., None, None]).flatten(2)  # (G, T, wh*ww)
            grid = torch.addcmul(offset[it][:, None, None, None], u, scale[it][:, None, None, None]).view(g, t * wh, ww, 2)
            bb, ss = it // n, src[it]

            def sample(frames, grid=grid, bb=bb, ss=ss, g=g, wh=wh, ww=ww):
                out = F.grid_sample(frames[bb, ss], grid, mode="bilinear", padding_mode="border", align_corners=False)
                return out.view(g, c, t, wh * ww)

            p1 = sample(frames1)
            p2 = sample(frames2) if frames2 is not None else p1
            o = o.long()
            pix = ((o[..., 1, None] + torch.arange(wh, device=dev)).unsqueeze(-1) * w
                   + (o[..., 0, None] + torch.arange(ww, device=dev)).unsqueeze(-2)).flatten(-2)  # (G, T, wh*ww)
            full_alpha.scatter_(0, ((it.view(g, 1, 1) * t + torch.arange(t, device=dev).view(1, t, 1)) * (h * w)
                                    + pix).flatten(), alpha.flatten())
            work.append((items, alpha, p1, p2, pix))
        chan = (torch.arange(c, device=dev).view(1, c, 1) * t + torch.arange(t, device=dev).view(1, 1, t)) * (h * w)
        for k in range(n):  # drawing order: slot k of every sample before slot k + 1
            for items, alpha, p1, p2, pix in work:
                slots = [i % n for i in items]  # sorted: this slot's items are one slice
                lo, hi = bisect.bisect_left(slots, k), bisect.bisect_right(slots, k)
                if lo == hi:
                    continue
                bb = torch.tensor([i // n for i in items[lo:hi]], device=dev)  # distinct samples: no overlap
                # flat index into (B, C, T, H, W): ((b * C + ch) * T + t) * HW + pixel
                idx = ((bb * (c * t * h * w)).view(-1, 1, 1, 1) + chan.unsqueeze(-1)
                       + pix[lo:hi].unsqueeze(1)).flatten()
                a = alpha[lo:hi].unsqueeze(1)  # (S, 1, T, wh*ww)
                for out, p in ((out1, p1), (out2, p2)):
                    win = out.take(idx).view(hi - lo, c, t, -1).lerp_(p[lo:hi], a)
                    out.scatter_(0, idx, win.flatten())
        return {"alpha": full_alpha.view(b, n, t, h, w), "patches": [(items, p1) for items, _, p1, _, _ in work],
                "window": origin.view(b, n, t, 2)}


def render_examples(clips: torch.Tensor, cfg: TubeletConfig | None, path, num_samples: int = 4,
                    num_frames: int = 8) -> None:
    """Save a PNG grid of tubelet pairs for inspection: for each of the first ``num_samples`` clips,
    one row for view 1 and one for view 2, ``num_frames`` evenly spaced frames per row.

    Args:
        clips: uint8 or float-in-[0,1] clips (B, C, T, H, W), B >= 2.
        cfg: tubelet config (None = defaults).
        path: output .png path.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = clips.float() / 255 if clips.dtype == torch.uint8 else clips.float()
    v1, v2, info = TubeletSynthesizer(cfg)(x)
    k = min(num_samples, x.shape[0])
    frames = torch.linspace(0, x.shape[2] - 1, num_frames).round().long()
    fig, axes = plt.subplots(2 * k, num_frames, figsize=(1.4 * num_frames, 1.5 * 2 * k), squeeze=False)
    for i in range(k):
        for row, (v, name) in enumerate([(v1, f"clip {i}"), (v2, f"clip {int(info['partner'][i])}")]):
            for col, f in enumerate(frames.tolist()):
                ax = axes[2 * i + row, col]
                ax.imshow(v[i, :, f].permute(1, 2, 0).clamp(0, 1).cpu().numpy())
                ax.set_xticks([]), ax.set_yticks([])
                if col == 0:
                    ax.set_ylabel(name, fontsize=7)
                if i == 0 and row == 0:
                    ax.set_title(f"t={f}", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
