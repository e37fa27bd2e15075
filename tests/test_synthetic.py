"""SynthSEVERE is sound: deterministic, parseable by the real-format adapters, appearance-free labels,
and every task learnable from motion.

A reduced tiny benchmark (a few hundred videos) is generated once per module. The statistical checks
use a logistic regression from scikit-learn on hand-made per-clip features:

- appearance: mean colour, colour std, mean |Laplacian| and gradient energy of the first frame and
  averaged over the frames -> must stay within chance + 3 binomial standard errors (+0.02);
- motion: frame-difference centroid trajectory, a global affine optical-flow fit per frame pair
  (translation, curl, divergence) and the spectra of those signals -> must clearly beat chance.
"""

from __future__ import annotations

import filecmp
import functools
import json
import math
from pathlib import Path

import numpy as np
import pytest

from vssl.data.synth import PRESETS, generate, load_description

SIZES = {"pretrain": (10, 10), "samples_a": (50, 120), "domain_a": (64, 112), "domain_b": (160, 176),
         "counting": (45, 45), "multilabel": (70, 70)}


SMALL = {"pretrain": (4, 2), "samples_a": (10, 10), "domain_a": (8, 8), "domain_b": (16, 16),
         "counting": (4, 4), "multilabel": (4, 4)}


@pytest.fixture(scope="module")
def bench(tmp_path_factory) -> Path:
    """A reduced tiny benchmark big enough for statistics (~860 videos, ~15 s)."""
    out = tmp_path_factory.mktemp("synthsevere")
    generate(out, "tiny", seed=3, workers=2, sizes=SIZES, progress=False)
    return out


@pytest.fixture(scope="module")
def small_bench(tmp_path_factory) -> Path:
    """Every class once per split: enough to check formats (~90 videos, ~2 s)."""
    out = tmp_path_factory.mktemp("synthsevere_small")
    generate(out, "tiny", seed=3, workers=1, sizes=SMALL, progress=False)
    return out


# --- features ---------------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def decode(path: Path) -> np.ndarray:
    """Decoded frames (T, H, W, 3) uint8; cached: several experiments share Domain B videos."""
    import av

    with av.open(str(path)) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])


def appearance_features(v: np.ndarray) -> np.ndarray:
    """Per-frame appearance statistics: of the first frame, and averaged over time."""
    v = v.astype(np.float32) / 255
    g = v.mean(-1)
    lap = np.abs(4 * g[:, 1:-1, 1:-1] - g[:, :-2, 1:-1] - g[:, 2:, 1:-1] - g[:, 1:-1, :-2] - g[:, 1:-1, 2:])
    gy, gx = np.gradient(g, axis=(1, 2))
    per_frame = np.concatenate([v.mean((1, 2)), v.std((1, 2)), lap.mean((1, 2))[:, None],
                                (gx**2 + gy**2).mean((1, 2))[:, None]], 1)
    return np.concatenate([per_frame[0], per_frame.mean(0)])


def _bins(a: np.ndarray, n: int = 8) -> np.ndarray:
    return np.array([c.mean() for c in np.array_split(a, n)])


def motion_features(v: np.ndarray) -> np.ndarray:
    """Centroid of frame differences + affine flow (It + Ix vx + Iy vy = 0) per frame pair."""
    v = v.astype(np.float32) / 255
    T, H, W, _ = v.shape
    g = v.mean(-1)
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32) / H - 0.5
    w = np.clip(np.abs(np.diff(v, axis=0)).sum(-1) - 0.05, 0, None)            # (T-1, H, W)
    e = w.sum((1, 2)) + 1e-6
    cx, cy = (w * xx).sum((1, 2)) / e, (w * yy).sum((1, 2)) / e
    m = 0.5 * (g[1:] + g[:-1])
    Iy, Ix = np.gradient(m, axis=(1, 2))
    It = np.diff(g, axis=0)
    dx, dy = xx - cx[:, None, None], yy - cy[:, None, None]
    A = np.stack([Ix, Iy, Ix * dx, Ix * dy, Iy * dx, Iy * dy], -1)             # (T-1, H, W, 6)
    wt = w + 1e-3 * (w.max((1, 2), keepdims=True) + 1e-6)
    AtA = np.einsum("thwi,thwj,thw->tij", A, A, wt) + 1e-6 * np.eye(6)
    Atb = np.einsum("thwi,thw->ti", A, -It * wt)
    bx, by, a11, a12, a21, a22 = np.linalg.solve(AtA, Atb[..., None])[..., 0].T
    s = np.stack([cx, cy, np.log(e), bx, by, a21 - a12, a11 + a22], 1)
    vel = np.diff(s[:, :2], axis=0)
    spec = []
    for j in (0, 1, 2, 5, 6):
        f = np.abs(np.fft.rfft(s[:, j] - s[:, j].mean(), n=64))[1:33]
        spec.append(f / (f.sum() + 1e-6))
    summary = [s[:, 5].mean(), np.abs(s[:, 5]).mean(), s[:, 6].std(), np.abs(vel).mean(),
               (np.diff(np.sign(vel[:, 1])) != 0).sum(), (np.diff(np.sign(vel[:, 0])) != 0).sum()]
    return np.concatenate([*(_bins(s[:, j]) for j in range(7)), *(_bins(vel[:, j]) for j in range(2)),
                           *spec, summary])


# --- loading through the dataset adapters -----------------------------------------------------

def load(bench: Path, exp: dict, split_key: str):
    """(video paths, labels) of one experiment split, read by the real-format adapter."""
    from vssl.data.datasets import load_videos

    vl = load_videos(exp["dataset"], bench / exp["annotations"], exp["splits"][split_key], 1,
                     **exp["adapter_options"])
    root = bench / exp["video_root"]
    paths = [root / Path(r.path).with_suffix(".mp4") for r in vl.records]
    return paths, [r.label for r in vl.records], vl


_FEATURES: dict = {}


def features(paths, fn) -> np.ndarray:
    for p in paths:
        if (p, fn) not in _FEATURES:
            _FEATURES[p, fn] = fn(decode(p))
    return np.stack([_FEATURES[p, fn] for p in paths])


def probe_accuracy(Xtr, ytr, Xte, yte, C=0.5) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    clf = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=3000)).fit(Xtr, ytr)
    return float((clf.predict(Xte) == np.asarray(yte)).mean())


def experiments(bench: Path) -> dict[str, dict]:
    return {e["name"]: e for e in load_description(bench)["experiments"]}


CLASSIFICATION = ["samples_a", "domain_a", "domain_b", "actions_1", "actions_2"]


# --- tests ------------------------------------------------------------------------------------

def test_presets_and_description(small_bench):
    bench = small_bench
    assert [PRESETS[p].size for p in ("tiny", "small", "base")] == [32, 64, 112]
    assert PRESETS["tiny"].frames > 16   # clip sampling matters
    tiny = PRESETS["tiny"].sizes
    assert 1000 <= sum(tiny["pretrain"]) <= 2000
    desc = load_description(bench)
    exps = experiments(bench)
    assert list(exps) == ["domain_a", "domain_b", "samples_a", "samples_b", "actions_1", "actions_2",
                          "counting", "multilabel"]
    assert exps["actions_1"]["adapter_options"]["label_range"] == [0, 5]
    assert exps["actions_2"]["adapter_options"]["label_range"] == [6, 11]
    assert exps["samples_a"]["adapter_options"]["num_examples"] == 10 * exps["samples_a"]["num_classes"]
    for e in exps.values():
        assert (bench / e["annotations"]).is_dir() and (bench / e["video_root"]).is_dir()
        if e["task"] == "classification":
            n = e["sizes"][e["splits"]["test"]]
            assert e["max_standard_error"] == pytest.approx(0.5 / math.sqrt(n), abs=1e-4)
    assert "standard_error" in desc and (bench / "README.md").read_text().count("|") > 50


def test_annotations_parse_with_adapters(small_bench):
    """Every experiment loads through its adapter with the sizes stated in synthsevere.json."""
    bench = small_bench
    for name, e in experiments(bench).items():
        for key in ("train", "test"):
            paths, labels, vl = load(bench, e, key)
            assert len(paths) == e["sizes"][e["splits"][key]], (name, key)
            assert all(p.is_file() for p in paths), name
            if e["task"] == "classification":
                assert sorted(set(labels)) == list(range(e["num_classes"])), name
            elif e["task"] == "counting":
                assert min(labels) >= 2 and max(labels) <= 10
            else:
                assert all(len(lab) >= 1 for lab in labels)
    # every record has its own file (no name collisions)
    assert len(list(bench.rglob("*.mp4"))) == sum(sum(v) for v in SMALL.values())
    # the pretraining corpus reads as mini-Kinetics
    from vssl.data.datasets import load_videos

    corpus = load_description(bench)["pretrain"]
    vl = load_videos("mini_kinetics", bench / corpus["annotations"], "train")
    assert len(vl.records) == SMALL["pretrain"][0]


def test_ucfrep_struct_and_charades_csv(small_bench):
    import csv
    import io
    import zipfile

    import scipy.io

    bench = small_bench
    zf = zipfile.ZipFile(bench / "counting/annotations/ucf526_annotations.zip")
    mats = [n for n in zf.namelist() if n.endswith(".mat")]
    assert len(mats) == sum(SMALL["counting"])
    label = scipy.io.loadmat(io.BytesIO(zf.read(mats[0])))["label"][0, 0]
    bounds = label["temporal_bound"].ravel()
    assert label["temporal_bound"].shape[1] == 1 and bounds[0] == label["start_frame"][0, 0] >= 1
    assert bounds[-1] == label["end_frame"][0, 0] <= PRESETS["tiny"].count_frames
    assert label["duration"][0, 0] == bounds[-1] - bounds[0] + 1
    assert label["temporal_bound_num"][0, 0] == len(bounds)
    assert np.all(np.diff(bounds) >= 4)   # >= 4 frames per cycle: no aliasing at 16 fps
    rows = list(csv.DictReader(open(bench / "multilabel/annotations/Charades_v1_train.csv")))
    assert list(rows[0]) == ["id", "subject", "scene", "quality", "relevance", "verified", "script", "objects",
                             "descriptions", "actions", "length"]
    for a in rows[0]["actions"].split(";"):
        cls, s, t = a.split()
        assert cls.startswith("c") and len(cls) == 4 and 0 <= float(s) < float(t) <= float(rows[0]["length"])


def test_deterministic_bytes_whatever_the_workers(tmp_path):
    sizes = {d: (1, 1) for d in SIZES}
    a = generate(tmp_path / "a", "tiny", seed=5, workers=1, sizes=sizes, progress=False)
    generate(tmp_path / "b", "tiny", seed=5, workers=2, sizes=sizes, progress=False)
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert len(files) > 20
    for f in files:
        if f.name in ("synthsevere.json", "README.md"):   # carry timings and worker counts
            continue
        assert filecmp.cmp(tmp_path / "a" / f, tmp_path / "b" / f, shallow=False), f
    b = json.loads((tmp_path / "b" / "synthsevere.json").read_text())
    assert a["experiments"] == b["experiments"]
    c = generate(tmp_path / "c", "tiny", seed=6, workers=1, sizes={d: (1, 0) for d in SIZES}, progress=False)
    video = next(p for p in files if p.suffix == ".mp4")
    assert not filecmp.cmp(tmp_path / "a" / video, tmp_path / "c" / video, shallow=False)
    assert c["seed"] == 6


def test_objects_are_large_and_visible():
    """Pilot lesson: objects of 3-5 px at 32 px were invisible to pooled features."""
    from vssl.data.synth import render_video

    for dataset in ("pretrain", "domain_a", "domain_b", "multilabel"):
        frames, _ = render_video(PRESETS["tiny"], 0, dataset, "train", 7)
        moving = np.abs(np.diff(frames.astype(np.float32), axis=0)).sum(-1) > 30
        assert moving.mean() > 0.01, dataset          # visible motion every frame on average
        assert frames.std((1, 2)).mean() < 80         # backgrounds do not saturate the frame


@pytest.mark.slow
def test_appearance_gives_no_label_away(bench):
    """Logistic regression on appearance statistics stays at chance on every classification task."""
    for name in CLASSIFICATION:
        e = experiments(bench)[name]
        ptr, ytr, _ = load(bench, e, "train")
        pte, yte, _ = load(bench, e, "test")
        acc = probe_accuracy(features(ptr, appearance_features), ytr, features(pte, appearance_features), yte)
        chance = 1 / e["num_classes"]
        se = math.sqrt(chance * (1 - chance) / len(yte))
        assert acc <= chance + 3 * se + 0.02, f"{name}: appearance accuracy {acc:.3f}, chance {chance:.3f}"


@pytest.mark.slow
def test_every_task_is_learnable_from_motion(bench):
    """Hand-made motion features + a linear model clearly beat chance on all 8 experiments."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import average_precision_score
    from sklearn.preprocessing import StandardScaler

    exps = experiments(bench)
    for name in CLASSIFICATION + ["samples_b"]:
        e = exps[name]
        ptr, ytr, _ = load(bench, e, "train")
        pte, yte, _ = load(bench, e, "test")
        acc = probe_accuracy(features(ptr, motion_features), ytr, features(pte, motion_features), yte)
        chance = 1 / e["num_classes"]
        se = math.sqrt(chance * (1 - chance) / len(yte))
        assert acc >= chance + max(0.2, 5 * se), f"{name}: motion accuracy {acc:.3f}, chance {chance:.3f}"

    e = exps["counting"]
    ptr, ytr, _ = load(bench, e, "train")
    pte, yte, _ = load(bench, e, "test")
    ytr, yte = np.asarray(ytr, int), np.asarray(yte, int)
    pred = LogisticRegression(C=0.5, max_iter=3000).fit(
        (sc := StandardScaler().fit(Xtr := features(ptr, motion_features))).transform(Xtr), ytr
    ).predict(sc.transform(features(pte, motion_features)))
    mae = (np.abs(pred - yte) / yte).mean()
    constant = (np.abs(np.median(ytr) - yte) / yte).mean()
    assert mae < 0.75 * constant, f"counting: nMAE {mae:.3f} vs constant {constant:.3f}"

    e = exps["multilabel"]
    ptr, ytr, vl = load(bench, e, "train")
    pte, yte, _ = load(bench, e, "test")
    C = e["num_classes"]
    Ytr = np.array([[c in lab for c in range(C)] for lab in ytr], float)
    Yte = np.array([[c in lab for c in range(C)] for lab in yte], float)
    sc = StandardScaler().fit(Xtr := features(ptr, motion_features))
    Xte = sc.transform(features(pte, motion_features))
    aps = [average_precision_score(Yte[:, c], LogisticRegression(C=0.5, max_iter=3000)
                                   .fit(sc.transform(Xtr), Ytr[:, c]).predict_proba(Xte)[:, 1])
           for c in range(C) if Yte[:, c].any()]
    assert np.mean(aps) > Yte.mean() + 0.12, f"multilabel: mAP {np.mean(aps):.3f}, prevalence {Yte.mean():.3f}"


def test_cli_and_output_folder_rules(tmp_path, capsys):
    """`vssl synth` is wired to synth_command; a rerun replaces the tree; a foreign folder is refused."""
    from vssl.cli import build_parser
    from vssl.errors import VsslError

    args = build_parser().parse_args(["synth", str(tmp_path / "s"), "--preset", "small", "--seed", "4"])
    assert args._call == ("vssl.data.commands", "synth_command") and args.seed == 4
    sizes = {d: (1, 1) for d in SIZES}
    generate(tmp_path / "s", "tiny", seed=1, workers=1, sizes={**sizes, "pretrain": (3, 1)}, progress=False)
    generate(tmp_path / "s", "tiny", seed=1, workers=1, sizes=sizes, progress=False)
    assert len(list((tmp_path / "s" / "pretrain" / "videos").glob("*.mp4"))) == 2   # no stale videos
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(VsslError, match="not a SynthSEVERE folder"):
        generate(tmp_path / "mine", "tiny", sizes=sizes, workers=1, progress=False)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_counting_names_stay_ucf101_names_at_large_sizes():
    """Counting videos carry UCF101 names (v_<Class>_gXX_cXX) that the UCFRep adapter parses; the GPU
    budget's 1,440 test videos once produced g100, which parsed to a wrong class folder."""
    import re

    from vssl.data.synth.writers import video_name

    names = [video_name("counting", split, i, (i % 4, 2, 0, 1))
             for split, n in (("train", 4000), ("test", 4000)) for i in range(n)]
    assert len(set(names)) == len(names)
    assert all(re.fullmatch(r"v_[A-Za-z]+_g\d\d_c\d\d", n) for n in names)
    # small sizes keep their names (seed-0 benchmarks generated before stay valid)
    assert video_name("counting", "train", 5, (1, 2, 0, 1)) == "v_Circle_g01_c02"
    assert video_name("counting", "test", 0, (0, 2, 0, 1)) == "v_Oscillate_g50_c01"
