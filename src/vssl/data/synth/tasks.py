"""Class vocabularies and scene sampling for every SynthSEVERE dataset.

Each dataset has a domain (background statistics + object palette) and a list of classes; a class
is a motion recipe. ``sample_scene(dataset, rng, label, T)`` returns the objects (appearance,
track) and the camera path. Appearance is always drawn *before and independently of* the label's
motion, from the same distribution for every class, so only motion can solve a task.
"""

from __future__ import annotations

import numpy as np

from vssl.data.synth import motions as M
from vssl.data.synth.render import Appearance, random_appearance

PI = np.pi

# --- source domain (pretraining corpus, Samples A, Counting) -----------------------------------
# (name in the list files, CamelCase folder name for UCF-style trees, motion)
SOURCE_CLASSES = [
    ("moving right", "MovingRight", lambda g, T, r: M.linear(g, T, r, 0.0)),
    ("moving left", "MovingLeft", lambda g, T, r: M.linear(g, T, r, PI)),
    ("moving up", "MovingUp", lambda g, T, r: M.linear(g, T, r, -PI / 2)),
    ("moving down", "MovingDown", lambda g, T, r: M.linear(g, T, r, PI / 2)),
    ("circling clockwise", "CirclingClockwise", lambda g, T, r: M.circle(g, T, r, g.uniform(0.8, 1.1), True)),
    ("circling anticlockwise", "CirclingAnticlockwise",
     lambda g, T, r: M.circle(g, T, r, g.uniform(0.8, 1.1), False)),
    ("oscillating", "Oscillating", lambda g, T, r: M.oscillate(g, T, r, g.uniform(1.8, 2.5))),
    ("spinning clockwise", "SpinningClockwise", lambda g, T, r: M.spin(g, T, r, g.uniform(1.0, 1.5), True)),
    ("spinning anticlockwise", "SpinningAnticlockwise",
     lambda g, T, r: M.spin(g, T, r, g.uniform(1.0, 1.5), False)),
    ("bouncing", "Bouncing", lambda g, T, r: M.hops(g, T, r, int(g.integers(2, 4)), length=(0.05, 0.15))),
]

# --- Domain A (SSv2-like): object-agnostic relations between a moving object A and an object B ----
DOMAIN_A_TEMPLATES = [
    "Moving [something] towards [something]",
    "Moving [something] away from [something]",
    "Moving [something] past [something]",
    "Moving [something] around [something]",
    "Pushing [something] with [something]",
    "Dropping [something] next to [something]",
    "Lifting [something] up next to [something]",
    "Spinning [something] next to [something]",
]


def _relation_paths(g, T: int, label: int, ra: float, rb: float):
    """Raw (unplaced) paths of A and B, B near the origin, for a Domain A class."""
    t = np.linspace(0, 1, T)
    touch = ra + rb + 0.02
    th = g.uniform(0, 2 * PI)
    d = np.array([np.cos(th), np.sin(th)])
    bx, by = np.zeros(T), np.zeros(T)
    spin_turns = 0.0
    if label in (0, 1):                       # towards / away: distance shrinks or grows
        d0 = g.uniform(0.45, 0.6)
        dist = d0 + (touch - d0) * t if label == 0 else touch + (d0 - touch) * t
        ax, ay = dist * d[0], dist * d[1]
    elif label == 2:                          # past: straight line that misses B
        h = (touch + g.uniform(0.02, 0.08)) * g.choice([-1, 1])
        L = g.uniform(0.5, 0.7)
        s = (t - 0.5) * L
        ax, ay = s * d[0] - h * d[1], s * d[1] + h * d[0]
    elif label == 3:                          # around: orbit B, either direction
        R = touch + g.uniform(0.02, 0.06)
        a = th + g.choice([-1, 1]) * 2 * PI * g.uniform(0.7, 1.0) * t
        ax, ay = R * np.cos(a), R * np.sin(a)
    elif label == 4:                          # pushing: A reaches B at mid-video, both slide on
        d0 = g.uniform(0.35, 0.45)
        push = g.uniform(0.2, 0.3)
        approach = np.clip(t / 0.5, 0, 1)
        slide = np.clip((t - 0.5) / 0.5, 0, 1) * push
        dist = d0 + (touch - d0) * approach
        ax, ay = dist * d[0] + slide * (-d[0]), dist * d[1] + slide * (-d[1])
        bx, by = slide * (-d[0]), slide * (-d[1])
    elif label in (5, 6):                     # dropping (accelerating down) / lifting (decelerating up)
        L = g.uniform(0.4, 0.55)
        prog = t**2 if label == 5 else 1 - (1 - t) ** 2
        ay = (L if label == 5 else -L) * prog
        ax = g.uniform(-0.04, 0.04) * t
        bx = np.full(T, g.choice([-1, 1]) * (touch + g.uniform(0.03, 0.15)))
        by = np.full(T, g.uniform(0, L) * (1 if label == 5 else -1))
    elif label == 7:                          # spinning A in place next to B
        ax, ay = np.full(T, (touch + g.uniform(0.05, 0.2)) * d[0]), np.full(T, (touch + 0.1) * d[1])
        spin_turns = g.choice([-1, 1]) * g.uniform(1.0, 1.5)
    else:
        raise ValueError(label)
    return (ax, ay), (bx, by), spin_turns


# --- Domain B (Gym99-like): fine-grained classes in three "events" -----------------------------
# Label ranges are inclusive, as in SEVERE (FX-S1 = Gym99 labels 6-16).
DOMAIN_B_CLASSES = [
    # event "floor: hops" -> Actions 1 (labels 0-5): number of hops, turns in the air, tempo
    ("hops: 1 hop", lambda g, T, r: M.hops(g, T, r, 1)),
    ("hops: 2 hops", lambda g, T, r: M.hops(g, T, r, 2)),
    ("hops: 3 hops", lambda g, T, r: M.hops(g, T, r, 3)),
    ("hops: 2 hops with a turn", lambda g, T, r: M.hops(g, T, r, 2, spins_per_hop=1.0)),
    ("hops: 2 quick hops then rest", lambda g, T, r: M.hops(g, T, r, 2, active=(0.0, 0.55))),
    ("hops: 1 hop with a double turn", lambda g, T, r: M.hops(g, T, r, 1, spins_per_hop=2.0)),
    # event "bars: circles" -> Actions 2 (labels 6-11): direction, number of turns, swing shape
    ("circles: 1 turn clockwise", lambda g, T, r: M.circle(g, T, r, 1.0, True)),
    ("circles: 1 turn anticlockwise", lambda g, T, r: M.circle(g, T, r, 1.0, False)),
    ("circles: 2 turns clockwise", lambda g, T, r: M.circle(g, T, r, 2.0, True)),
    ("circles: 2 turns anticlockwise", lambda g, T, r: M.circle(g, T, r, 2.0, False)),
    ("circles: pendulum swing", lambda g, T, r: M.pendulum(g, T, r)),
    ("circles: half turn and back", lambda g, T, r: M.reverse_circle(g, T, r)),
    # event "beam: balance"
    ("beam: bounce in place", lambda g, T, r: M.oscillate(g, T, r, g.uniform(2.0, 3.0), axis=PI / 2,
                                                          amplitude=(0.08, 0.14))),
    ("beam: slow slide", lambda g, T, r: M.linear(g, T, r, g.choice([0.0, PI]), length=(0.25, 0.35))),
    ("beam: turn clockwise", lambda g, T, r: M.spin(g, T, r, g.uniform(1.0, 1.5), True)),
    ("beam: turn anticlockwise", lambda g, T, r: M.spin(g, T, r, g.uniform(1.0, 1.5), False)),
]
ACTIONS_1_RANGE = (0, 5)
ACTIONS_2_RANGE = (6, 11)

# --- Counting (UCFRep-like), source domain: one cycle of a motion repeated k times -------------
COUNT_CLASSES = [
    ("Oscillate", lambda g, T, r, k: M.oscillate(g, T, r, k)),
    ("Circle", lambda g, T, r, k: M.circle(g, T, r, k, bool(g.integers(2)))),
    ("Bounce", lambda g, T, r, k: M.oscillate(g, T, r, k, axis=PI / 2, amplitude=(0.10, 0.18))),
    ("Pulse", lambda g, T, r, k: M.pulse(g, T, r, k)),
]
COUNT_RANGE = (2, 10)

# --- Multi-label (Charades-like), domain C: three objects, each does one action or rests ------
MULTI_CLASSES = [
    ("Moving something sideways", lambda g, T, r: M.linear(g, T, r, g.choice([0.0, PI]), length=(0.3, 0.5))),
    ("Moving something up or down", lambda g, T, r: M.linear(g, T, r, g.choice([-PI / 2, PI / 2]),
                                                              length=(0.3, 0.5))),
    ("Circling something", lambda g, T, r: M.circle(g, T, r, 1.0, bool(g.integers(2)), orbit=(0.1, 0.16))),
    ("Spinning something", lambda g, T, r: M.spin(g, T, r, 1.5, bool(g.integers(2)))),
    ("Shaking something", lambda g, T, r: M.oscillate(g, T, r, 3.5, amplitude=(0.05, 0.08))),
    ("Hopping something", lambda g, T, r: M.hops(g, T, r, 2, height=(0.15, 0.22), length=(0.1, 0.3))),
    ("Pulsating something", lambda g, T, r: M.pulse(g, T, r, 2.0)),
    ("Swinging something", lambda g, T, r: M.pendulum(g, T, r, arm=(0.1, 0.15))),
]

DOMAIN = {"pretrain": "source", "samples_a": "source", "counting": "source",
          "domain_a": "domain_a", "domain_b": "domain_b", "multilabel": "domain_c"}
PALETTE = {"source": "any", "domain_a": "muted", "domain_b": "saturated", "domain_c": "any"}
CAMERA = {  # (probability of a moving camera, amplitude, handheld jitter)
    "source": (0.3, 0.03, False), "domain_a": (0.7, 0.04, True),
    "domain_b": (0.5, 0.04, False), "domain_c": (0.3, 0.02, False),
}


def num_classes(dataset: str) -> int:
    return {"pretrain": len(SOURCE_CLASSES), "samples_a": len(SOURCE_CLASSES),
            "domain_a": len(DOMAIN_A_TEMPLATES), "domain_b": len(DOMAIN_B_CLASSES),
            "multilabel": len(MULTI_CLASSES), "counting": len(COUNT_CLASSES)}[dataset]


def _appearance(g, domain: str, bg_mean, radius=(0.11, 0.19)) -> Appearance:
    return random_appearance(g, PALETTE[domain], bg_mean, radius)


def sample_scene(dataset: str, g: np.random.Generator, label, T: int, bg_mean: np.ndarray):
    """Objects and camera for one video of ``dataset``.

    ``label`` is the class index, the repetition spec ``(class, k, start, stop)`` for counting, or a
    list of (class, start, stop) actions for multi-label. Returns ``(objects, camera_spec)`` where
    camera_spec is (amplitude, handheld) or None.
    """
    domain = DOMAIN[dataset]
    p_cam, amp, handheld = CAMERA[domain]
    camera = (amp, handheld) if g.random() < p_cam else None
    if dataset in ("pretrain", "samples_a"):
        app = _appearance(g, domain, bg_mean)
        objects = [(app, SOURCE_CLASSES[label][2](g, T, app.radius))]
        if g.random() < 0.5:  # a slow distractor: real scenes are not one clean object
            dis = _appearance(g, domain, bg_mean, radius=(0.08, 0.12))
            objects.insert(0, (dis, M.drift(g, T, dis.radius)))
    elif dataset == "domain_a":
        a = _appearance(g, domain, bg_mean, radius=(0.11, 0.15))
        b = _appearance(g, domain, bg_mean, radius=(0.11, 0.15))
        pa, pb, turns = _relation_paths(g, T, label, a.radius, b.radius)
        (ax, ay), (bx, by) = M.place_group(g, [pa, pb], max(a.radius, b.radius))
        ta, tb = M.with_pose(g, T, ax, ay), M.with_pose(g, T, bx, by)
        if turns:
            ta.angle = ta.angle[0] + 2 * PI * turns * np.linspace(0, 1, T)
        objects = [(b, tb), (a, ta)]
    elif dataset == "domain_b":
        app = _appearance(g, domain, bg_mean, radius=(0.11, 0.17))
        objects = [(app, DOMAIN_B_CLASSES[label][1](g, T, app.radius))]
    elif dataset == "counting":
        cls, k, start, stop = label
        app = _appearance(g, domain, bg_mean)
        track = COUNT_CLASSES[cls][1](g, T, app.radius, k)
        active = np.zeros(T, bool)
        active[start:stop + 1] = True
        objects = [(app, M.hold_outside(track, active))]
    elif dataset == "multilabel":
        objects = []
        actions = list(label) + [None] * (3 - len(label))   # always 3 objects: count is not a cue
        order = g.permutation(3)
        for i in order:
            app = _appearance(g, domain, bg_mean, radius=(0.12, 0.16))
            if actions[i] is None:
                track = M.still(g, T, app.radius)
            else:
                cls, s, e = actions[i]
                active = np.zeros(T, bool)
                active[s:e + 1] = True
                track = M.hold_outside(MULTI_CLASSES[cls][1](g, T, app.radius), active)
            objects.append((app, track))
    else:
        raise ValueError(f"unknown dataset {dataset!r}")
    return objects, camera


def sample_label(dataset: str, g: np.random.Generator, index: int, T: int):
    """The label of video ``index``: balanced (index mod C) for classification, drawn otherwise."""
    if dataset in ("pretrain", "samples_a", "domain_a", "domain_b"):
        return index % num_classes(dataset)
    if dataset == "counting":
        # class and count are both balanced and independent: (index mod 4, (index div 4) mod 9)
        cls = index % len(COUNT_CLASSES)
        k = COUNT_RANGE[0] + (index // len(COUNT_CLASSES)) % (COUNT_RANGE[1] - COUNT_RANGE[0] + 1)
        # repetition segment: 50-90 % of the video, period >= 4 frames so 16 fps stays unaliased
        length = int(round(g.uniform(max(0.5 * T, 4.0 * k), max(0.9 * T, 4.0 * k + 1))))
        length = min(length, T)
        start = int(g.integers(0, T - length + 1))
        return (cls, k, start, start + length - 1)
    if dataset == "multilabel":
        n = int(g.choice([1, 2, 3], p=[0.3, 0.4, 0.3]))
        classes = g.choice(len(MULTI_CLASSES), n, replace=False)
        acts = []
        for c in classes:
            dur = int(round(g.uniform(0.75, 1.0) * T))
            s = int(g.integers(0, T - dur + 1))
            acts.append((int(c), s, s + dur - 1))
        return acts
    raise ValueError(dataset)
