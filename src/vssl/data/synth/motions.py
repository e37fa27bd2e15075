"""Parametrised object trajectories for SynthSEVERE.

A motion is a function ``(rng, T, radius) -> Track``: the per-frame centre (x, y) in normalised
frame coordinates ([0, 1], y pointing down), the in-plane angle (radians, positive = clockwise on
screen because y points down) and a size multiplier. ``radius`` is the object's radius in the same
normalised units, so every trajectory keeps the whole object inside the frame: the visible object
area, and therefore every appearance statistic, does not depend on the motion class.

Motions are defined over normalised time ``tau`` in [0, 1] (the whole video), so the same class
looks the same at every preset resolution and video length. Nuisance factors (start position,
exact speed, phase, small wobble of size and angle) are drawn inside each motion, never from the
label, and sized so that they cannot imitate a neighbouring class (e.g. the nuisance rotation of a
non-spinning object stays below a quarter turn, a spin class makes at least one full turn).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TAU = 2 * np.pi


@dataclass
class Track:
    """Per-frame pose of one object: arrays of shape (T,)."""

    x: np.ndarray
    y: np.ndarray
    angle: np.ndarray
    scale: np.ndarray

    def shifted(self, dx: np.ndarray | float, dy: np.ndarray | float) -> "Track":
        return Track(self.x + dx, self.y + dy, self.angle, self.scale)


def _time(T: int) -> np.ndarray:
    return np.linspace(0.0, 1.0, T)


def _nuisance(rng: np.random.Generator, T: int) -> tuple[np.ndarray, np.ndarray]:
    """Small angle drift (< 0.25 turn over the video) and size wobble (+-8 %), label-free."""
    t = _time(T)
    angle = rng.uniform(0, TAU) + rng.uniform(-0.25, 0.25) * TAU * t
    scale = 1.0 + rng.uniform(0, 0.08) * np.sin(TAU * rng.uniform(0.3, 1.0) * t + rng.uniform(0, TAU))
    return angle, scale


def _place(rng: np.random.Generator, x: np.ndarray, y: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray]:
    """Translate a path (any origin) to a random position where it stays inside the frame.

    The margin is the object radius times the largest size wobble, so no object is ever clipped.
    If a path is too large for the frame it is shrunk around its centre (rare; keeps shape).
    """
    m = radius * 1.1
    span_x, span_y = np.ptp(x), np.ptp(y)
    room = 1.0 - 2 * m
    shrink = min(1.0, room / max(span_x, 1e-6), room / max(span_y, 1e-6))
    x = (x - x.min()) * shrink
    y = (y - y.min()) * shrink
    ox = rng.uniform(m, max(m, 1.0 - m - np.ptp(x)))   # max(): float round-off after a shrink
    oy = rng.uniform(m, max(m, 1.0 - m - np.ptp(y)))
    return x + ox, y + oy


def _track(rng, T, radius, x, y, extra_angle=0.0) -> Track:
    angle, scale = _nuisance(rng, T)
    x, y = _place(rng, np.asarray(x, float), np.asarray(y, float), radius)
    return Track(x, y, angle + extra_angle, scale)


# --- elementary motions -----------------------------------------------------------------------

def linear(rng, T, radius, direction: float, length=(0.40, 0.60), wobble=0.02) -> Track:
    """Straight constant-speed motion along ``direction`` (radians, 0 = right, pi/2 = down)."""
    t = _time(T)
    L = rng.uniform(*length)
    side = rng.uniform(-wobble, wobble) * np.sin(TAU * rng.uniform(0.5, 1.0) * t)  # slight curvature
    d = np.array([np.cos(direction), np.sin(direction)])
    n = np.array([-d[1], d[0]])
    x = L * t * d[0] + side * n[0]
    y = L * t * d[1] + side * n[1]
    return _track(rng, T, radius, x, y)


def circle(rng, T, radius, turns: float, clockwise: bool, orbit=(0.14, 0.22)) -> Track:
    """Orbit of ``turns`` revolutions; on screen (y down) increasing angle is clockwise."""
    t = _time(T)
    r = rng.uniform(*orbit)
    phase = rng.uniform(0, TAU)
    sgn = 1.0 if clockwise else -1.0
    a = phase + sgn * TAU * turns * t
    return _track(rng, T, radius, r * np.cos(a), r * np.sin(a))


def oscillate(rng, T, radius, cycles: float, amplitude=(0.14, 0.22), axis: float | None = None) -> Track:
    """Back-and-forth along a random axis (sinusoid), ``cycles`` periods over the video."""
    t = _time(T)
    A = rng.uniform(*amplitude)
    axis = rng.uniform(0, np.pi) if axis is None else axis
    s = A * np.sin(TAU * cycles * t + rng.uniform(0, TAU))
    return _track(rng, T, radius, s * np.cos(axis), s * np.sin(axis))


def spin(rng, T, radius, turns: float, clockwise: bool, drift=0.05) -> Track:
    """Rotation in place (``turns`` revolutions) with a slow, small drift of the centre."""
    t = _time(T)
    a = rng.uniform(0, TAU)
    x, y = drift * t * np.cos(a), drift * t * np.sin(a)
    sgn = 1.0 if clockwise else -1.0
    track = _track(rng, T, radius, x, y)
    track.angle = track.angle[0] + sgn * TAU * turns * t  # replace the nuisance drift
    return track


def hops(rng, T, radius, n_hops: int, spins_per_hop: float = 0.0, active=(0.0, 1.0),
         height=(0.22, 0.32), length=(0.40, 0.60)) -> Track:
    """Travel sideways (left or right, drawn at random) in ``n_hops`` parabolic arcs.

    ``active`` is the part of the video (fraction) during which the hops happen; the object rests
    before/after. ``spins_per_hop`` full rotations happen during each flight (random direction).
    """
    t = _time(T)
    t0, t1 = active
    u = np.clip((t - t0) / (t1 - t0), 0, 1)  # progress through the hopping phase
    L = rng.uniform(*length) * rng.choice([-1.0, 1.0])
    H = rng.uniform(*height)
    w = (u * n_hops) % 1.0
    w[u >= 1] = 1.0
    y = -H * 4 * w * (1 - w)
    x = L * u
    sgn = rng.choice([-1.0, 1.0])
    angle = sgn * TAU * spins_per_hop * np.floor(u * n_hops + 1e-9) + sgn * TAU * spins_per_hop * w * (u < 1)
    track = _track(rng, T, radius, x, y)
    if spins_per_hop:
        track.angle = track.angle[0] + angle
    return track


def pendulum(rng, T, radius, cycles=1.5, swing=(0.45, 0.65), arm=(0.16, 0.24)) -> Track:
    """Swing below a pivot: the angle from the vertical follows a sinusoid."""
    t = _time(T)
    r = rng.uniform(*arm)
    a = np.pi / 2 + np.pi * rng.uniform(*swing) * np.sin(TAU * cycles * t + rng.uniform(0, TAU))
    return _track(rng, T, radius, r * np.cos(a), r * np.sin(a))


def reverse_circle(rng, T, radius, orbit=(0.14, 0.22)) -> Track:
    """Half a turn one way, then back (a swing that goes over the top)."""
    t = _time(T)
    r = rng.uniform(*orbit)
    phase = rng.uniform(0, TAU)
    sgn = rng.choice([-1.0, 1.0])
    a = phase + sgn * np.pi * (1 - np.abs(2 * t - 1))
    return _track(rng, T, radius, r * np.cos(a), r * np.sin(a))


def fall(rng, T, radius, up: bool, length=(0.40, 0.60)) -> Track:
    """Accelerating fall (down) or decelerating lift (up) with a little sideways drift."""
    t = _time(T)
    L = rng.uniform(*length)
    prog = t**2 if not up else 1 - (1 - t) ** 2
    y = (-L if up else L) * prog
    x = rng.uniform(-0.05, 0.05) * t
    return _track(rng, T, radius, x, y)


def pulse(rng, T, radius, cycles: float, amount=(0.25, 0.35)) -> Track:
    """Grow and shrink around the base size (time-averaged size equals the base size)."""
    t = _time(T)
    track = _track(rng, T, radius, rng.uniform(-0.03, 0.03) * t, rng.uniform(-0.03, 0.03) * t)
    track.scale = 1.0 + rng.uniform(*amount) * np.sin(TAU * cycles * t + rng.uniform(0, TAU))
    return track


def still(rng, T, radius) -> Track:
    """A resting object (tiny drift), used for reference objects and inactive periods."""
    t = _time(T)
    return _track(rng, T, radius, 0.01 * t, 0.01 * t)


def drift(rng, T, radius, speed=(0.05, 0.15)) -> Track:
    """Slow random drift: a distractor motion, clearly slower than any labelled motion."""
    t = _time(T)
    a = rng.uniform(0, TAU)
    s = rng.uniform(*speed)
    return _track(rng, T, radius, s * t * np.cos(a), s * t * np.sin(a))


def hold_outside(track: Track, active: np.ndarray) -> Track:
    """Freeze a track outside the frames where ``active`` is True (poses held at the edges).

    Used for Charades-style actions with a start and end time, and for repetition segments.
    """
    idx = np.arange(len(active))
    on = np.flatnonzero(active)
    src = np.clip(idx, on[0], on[-1]) if len(on) else np.zeros_like(idx)
    # Re-time the motion so that the whole trajectory plays inside the active window.
    T = len(active)
    if len(on) > 1:
        pos = (src - on[0]) / (on[-1] - on[0]) * (T - 1)
    else:
        pos = np.zeros(T)

    def warp(a):
        return np.interp(pos, np.arange(T), a)

    return Track(warp(track.x), warp(track.y), warp(track.angle), warp(track.scale))


def place_group(rng, paths: list[tuple[np.ndarray, np.ndarray]], radius: float) -> list[tuple[np.ndarray, np.ndarray]]:
    """Place several objects' paths (shared coordinates) together, keeping all inside the frame."""
    xs = np.concatenate([p[0] for p in paths])
    ys = np.concatenate([p[1] for p in paths])
    px, py = _place(rng, xs, ys, radius)
    out, i = [], 0
    for x, _ in paths:
        out.append((px[i:i + len(x)], py[i:i + len(x)]))
        i += len(x)
    return out


def with_pose(rng, T: int, x: np.ndarray, y: np.ndarray) -> Track:
    """A Track at an already placed path, with label-free angle/size nuisance."""
    angle, scale = _nuisance(rng, T)
    return Track(np.asarray(x, float), np.asarray(y, float), angle, scale)
