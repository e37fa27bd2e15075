"""SEVERE experiments/protocols as data, kNN / linear heads, and run_severe end to end on SynthSEVERE."""

import math
from pathlib import Path

import pytest
import torch

from vssl.errors import ConfigError, VsslError
from vssl.severe.experiments import EXPERIMENTS, SEVERE_COLUMNS, SYNTH_COLUMNS, select, synthetic_experiments
from vssl.severe.heads import fit_linear_head, knn_scores
from vssl.severe.protocols import PROTOCOLS, apply_overrides, get_protocol
from vssl.tasks import TASKS, constant_count_baseline


def test_experiments_are_the_severe_eight():
    assert list(EXPERIMENTS) == ["ssv2", "gym99", "ucf101_1k", "gym99_1k", "fx_s1", "ub_s1", "ucf_rc", "charades"]
    assert tuple(e.column for e in EXPERIMENTS.values()) == SEVERE_COLUMNS
    # the report's column order is the published table's (its `# columns:` line)
    from vssl.severe.published import read_published_csv
    published = read_published_csv("configs/severe/published/severe_eccv22.csv")[0]["published"]["columns"]
    assert SEVERE_COLUMNS == tuple(published)
    assert [e.factor for e in EXPERIMENTS.values()] == ["domain"] * 2 + ["samples"] * 2 + ["actions"] * 2 + ["task"] * 2
    assert {e.name: e.num_classes for e in EXPERIMENTS.values()} == {
        "ssv2": 174, "gym99": 99, "ucf101_1k": 101, "gym99_1k": 99, "fx_s1": 11, "ub_s1": 15, "ucf_rc": 0,
        "charades": 157}
    assert EXPERIMENTS["ucf_rc"].lower_is_better and EXPERIMENTS["charades"].metric == "map"
    from vssl.data.datasets import ADAPTERS, SPLITS
    for e in EXPERIMENTS.values():  # every experiment names a real adapter and its split names
        assert e.dataset in ADAPTERS and {e.train_split, e.test_split} <= set(SPLITS[e.dataset])


def test_paper_recipes_follow_the_published_configs():
    paper = PROTOCOLS["paper"]
    table = {n: (r.epochs, r.milestones, r.lr, r.batch_size) for n, e in EXPERIMENTS.items()
             for r in [paper.recipe(e)]}
    assert table["ssv2"] == (22, (12, 17, 20), 1e-4, 32)
    assert table["gym99"] == table["ucf101_1k"] == table["gym99_1k"] == (16, (6, 10, 14), 1e-4, 32)
    assert table["fx_s1"] == table["ub_s1"] == (18, (7, 12, 16), 1e-4, 32)
    r = paper.recipe(EXPERIMENTS["gym99"])
    assert (r.num_frames, r.fps, r.crop_size, r.load_size, r.gamma, r.test_clips, r.ensemble) == (
        32, 16.0, 112, 128, 0.3, 10, "mean")
    c = paper.recipe(EXPERIMENTS["charades"])
    assert (c.optimizer, c.lr, c.nesterov, c.test_clips, c.test_crops, c.ensemble, c.dropout) == (
        "sgd", 0.0375, True, 10, 3, "max", 0.5)
    # epochs -> optimizer steps: 1000 videos x 10 clips / batch 32 = 312 steps per epoch
    assert r.schedule(312) == (16 * 312, [6 * 312, 10 * 312, 14 * 312], 0)
    assert c.schedule(100) == (5700, [4100, 4900], 400)
    q = apply_overrides(PROTOCOLS["quick"].recipe(EXPERIMENTS["ssv2"]), ["steps=10", "milestones=[0.5]"])
    assert q.schedule(999) == (10, [5], 0)


def test_overrides_and_names_fail_clearly():
    with pytest.raises(ConfigError, match="unknown recipe key 'stepz'"):
        apply_overrides(PROTOCOLS["quick"].base, ["stepz=3"])
    with pytest.raises(ConfigError, match="expected a number"):
        apply_overrides(PROTOCOLS["quick"].base, ["lr=fast"])
    with pytest.raises(ConfigError, match="unknown protocol"):
        get_protocol("fancy")
    with pytest.raises(ConfigError, match="unknown experiment"):
        select("ssv2,nope", EXPERIMENTS)
    assert [e.name for e in select("fx_s1, ucf_rc", EXPERIMENTS)] == ["fx_s1", "ucf_rc"]


def test_knn_votes_use_the_train_bank_with_temperature():
    bank = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]])
    labels = torch.tensor([0, 0, 1])
    q = torch.tensor([[0.0, 2.0], [1.0, 0.05]])
    s = knn_scores(bank, labels, q, "classification", num_classes=2, k=200, tau=0.07)  # k clipped to 3
    assert s.argmax(1).tolist() == [1, 0]
    # hand computation for query 0: sims 0, 0.1104, 1 -> weights exp(sim / 0.07), normalised
    sims = torch.nn.functional.normalize(bank, dim=1) @ torch.tensor([0.0, 1.0])
    w = (sims / 0.07).exp()
    assert s[0, 1] == pytest.approx(float(w[2] / w.sum()), rel=1e-5)
    s1 = knn_scores(bank, labels, q, "classification", num_classes=2, k=1)
    assert s1.tolist() == [[0.0, 1.0], [1.0, 0.0]]
    multi = knn_scores(bank, torch.tensor([[1, 0], [1, 1], [0, 1]]), q, "multilabel", k=1)
    assert multi.tolist() == [[0.0, 1.0], [1.0, 0.0]]
    counts = knn_scores(bank, torch.tensor([4.0, 4.0, 9.0]), q, "counting", k=2)
    assert math.exp(counts[1]) == pytest.approx(4.0)


def test_linear_head_on_features_and_ensembles():
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 3, (90,), generator=g)
    x = torch.randn(90, 16, generator=g) * 0.3 + torch.nn.functional.one_hot(y, 16).float() * 3 + 5
    head = fit_linear_head(x, y, "classification", 3, epochs=100)
    assert (head(x).argmax(1) == y).float().mean() > 0.95
    counts = torch.tensor([2.0, 4.0, 8.0]).repeat(30)
    feats = torch.log(counts)[:, None] * torch.ones(1, 4) + 0.01 * torch.randn(90, 4, generator=g)
    reg = fit_linear_head(feats, counts, "counting", 1, epochs=300, lr=0.05)
    assert reg(feats).exp().round().tolist()[:3] == [2.0, 4.0, 8.0]
    views = torch.tensor([[[2.0, 0.0], [0.0, 2.0]]])  # 1 video, 2 views, 2 classes
    assert TASKS["classification"].scores(views)[0].tolist() == pytest.approx([0.5, 0.5])
    assert TASKS["multilabel"].scores(views, "max")[0, 0] == pytest.approx(torch.sigmoid(torch.tensor(2.0)).item())
    assert TASKS["counting"].scores(torch.log(torch.tensor([[2.0, 8.0]]))).item() == pytest.approx(4.0)


def test_constant_count_baseline_minimises_train_error():
    train = [2.0, 2.0, 3.0, 10.0, 10.0, 10.0]
    base = constant_count_baseline(train, train)
    best = min(range(1, 12), key=lambda c: sum(abs(c - t) / t for t in train))
    assert base["count"] == best == 2.0
    assert base["mae"] == pytest.approx(sum(abs(2 - t) / t for t in train) / 6)


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory):
    from vssl.data.synth import generate

    root = tmp_path_factory.mktemp("synth")
    generate(root, "tiny", seed=0, workers=1, progress=False,
             sizes={"pretrain": (1, 1), "samples_a": (4, 4), "domain_a": (16, 8), "domain_b": (8, 4),
                    "counting": (8, 6), "multilabel": (8, 6)})
    return root


def test_frozen_caches_live_in_the_folders_the_run_names(synth_root, tmp_path):
    """A run's feature and clip caches are written where its ExperimentRun says, whatever its work folder,
    and a second run (another seed, another work folder) reads them instead of decoding again."""
    from vssl.severe.caches import Caches
    from vssl.severe.plan import ExperimentRun
    from vssl.severe.runner import run_experiment

    exp = synthetic_experiments(synth_root)["domain_a"]
    recipe = PROTOCOLS["quick"].recipe(exp, ["head_epochs=5"])
    caches = Caches(features=tmp_path / "feats", clips=tmp_path / "clips")
    first = run_experiment(ExperimentRun(exp, recipe, "r2plus1d_tiny", None, synth_root, 1, "cpu", tmp_path / "w1",
                                         caches))
    feats, clips = sorted(caches.features.glob("*.pt")), sorted(caches.clips.glob("*.pt"))
    # one feature file per split (1 train clip vs 1 test clip per video: same fields, other split), one clip
    # file per split; nothing else anywhere under the test's folder
    assert [p.name.split("-")[:2] for p in feats] == [["ssv2", "train"], ["ssv2", "validation"]]
    assert [p.name.split("-")[:2] for p in clips] == [["ssv2", "train"], ["ssv2", "validation"]]
    assert sorted(tmp_path.rglob("*.pt")) == sorted(feats + clips)
    stamps = {p: p.stat().st_mtime_ns for p in feats + clips}
    second = run_experiment(ExperimentRun(exp, recipe, "r2plus1d_tiny", None, synth_root, 1, "cpu", tmp_path / "w2",
                                          caches))
    assert {p: p.stat().st_mtime_ns for p in feats + clips} == stamps  # read, not written again
    assert second[0] == first[0]  # same seed, same features: the same scores


def test_synthetic_experiments_from_description(synth_root):
    exps = synthetic_experiments(synth_root)
    assert tuple(exps) == SYNTH_COLUMNS
    assert exps["counting"].task == "counting" and exps["counting"].metric == "mae"
    assert exps["multilabel"].metric == "map" and exps["domain_a"].dataset == "ssv2"
    assert exps["actions_1"].options == {"label_range": [0, 5]}
    assert not exps["actions_2"].flip and exps["domain_a"].flip  # chiral classes train without flips
    assert all(e.annotation_dir(synth_root).is_dir() and e.video_root(synth_root).is_dir() for e in exps.values())


def test_run_severe_end_to_end(synth_root, tmp_path):
    from vssl.severe.report import render
    from vssl.severe.results import ResultsStore
    from vssl.severe.table import build_tables
    from vssl.severe.runner import run_severe

    out, logs = tmp_path / "out", []
    # a broken test video is skipped, counted and reported, never the end of the run
    from vssl.data.datasets import load_videos
    exp = synthetic_experiments(synth_root)["domain_a"]
    rel = load_videos("ssv2", exp.annotation_dir(synth_root), "validation").records[0].path
    broken = next(exp.video_root(synth_root).glob(Path(rel).stem + ".*"))
    broken.write_bytes(broken.read_bytes()[:300])
    quick = run_severe("r2plus1d_tiny", None, synth_root, out, "domain_a,counting", "quick-ft", seeds=[1],
                       overrides=["steps=3", "batch_size=4", "num_frames=8"], log=logs.append)
    assert [r.key.experiment for r in quick] == ["domain_a", "counting"]
    assert quick[0].primary == quick[0].metrics["top1"] and quick[1].metric == "mae"
    assert "mae_constant_baseline" in quick[1].metrics
    assert quick[0].timings["train_steps"] == 3 and quick[0].extra["num_test"] == 8
    # the broken test video is dropped, not replaced by another: 7 of the 8 videos are scored, and the
    # score is printed with that count
    assert (quick[0].extra["dropped"], quick[0].extra["num_scored"], quick[0].extra["dropped_paths"]) == (1, 7, [rel])
    assert any(line.startswith("done domain_a") and "on 7 of 8 test videos: 1 unreadable, dropped" in line
               for line in logs)
    from vssl.config import load_config  # each fine-tuning run saves the config of a registered method
    saved = {load_config(p).method.name: load_config(p) for p in (out / "runs").rglob("config.yaml")}
    assert set(saved) == {"supervised", "log_count"} and saved["supervised"].method.params["num_classes"] == 8
    from vssl.engine.run import build_backbone as backbone_of
    from vssl.methods import build_method
    from vssl.methods.log_count import LogCount
    rebuilt = build_method(saved["log_count"], backbone_of(saved["log_count"]))  # the registered method, again
    assert isinstance(rebuilt, LogCount)
    assert rebuilt.head.fc.bias.item() == pytest.approx(saved["log_count"].method.params["init_log_count"])

    # a pretrained checkpoint (here: the tiny net's own init) is keyed by its sha256
    from vssl.models import build_backbone
    ckpt = tmp_path / "backbone.pt"
    torch.manual_seed(0)
    torch.save(build_backbone("r2plus1d_tiny").state_dict(), ckpt)
    lin = run_severe("r2plus1d_tiny", ckpt, synth_root, out, ["domain_a", "multilabel"], "quick", seeds=[1, 2],
                     name="tiny-init", log=logs.append)
    knn = run_severe("r2plus1d_tiny", ckpt, synth_root, out, ["domain_a"], "knn", seeds=[1], name="tiny-init",
                     overrides=["num_frames=16", "fps=0", "load_size=36", "crop_size=32", "test_clips=2"],
                     log=logs.append)
    assert len(lin) == 4 and lin[0].key.checkpoint != "none" and len(lin[0].key.checkpoint) == 64
    assert lin[0].extra["dropped"] == knn[0].extra["dropped"] == 1  # the frozen protocols drop it too
    cached = sorted((out / "runs").rglob("features/*.pt"))
    # features extracted once per model, split and clip recipe: train/test of 2 experiments for the linear
    # probe, shared by its 2 seeds; knn samples its clips differently, so its 2 files are its own
    assert len(cached) == 6, [p.name for p in cached]
    assert knn[0].primary == pytest.approx(_sklearn_knn_top1(cached, synth_root, exp, rel), abs=1e-9)

    logs.clear()
    again = run_severe("r2plus1d_tiny", None, synth_root, out, "domain_a,counting", "quick-ft", seeds=[1],
                       overrides=["steps=3", "batch_size=4", "num_frames=8"], log=logs.append)
    assert all(line.startswith("skip") for line in logs) and len(logs) == 2
    assert [r.primary for r in again] == [r.primary for r in quick]
    with ResultsStore(out / "results.sqlite") as store:
        assert len(store) == 7
    (table,) = build_tables(again + lin + knn)
    quick_row = "r2plus1d_tiny [quick-ft(batch_size=4,num_frames=8,steps=3)]"
    knn_row = "tiny-init [knn(crop_size=32,fps=0,load_size=36,num_frames=16,test_clips=2)]"
    assert {r.model for r in table.rows} == {quick_row, "tiny-init [quick]", knn_row}
    assert "domain_a" in render(table, "md")


def _sklearn_knn_top1(cached, synth_root, exp, broken) -> float:
    """The knn protocol's top-1 recomputed with scikit-learn from the cached frozen features: k=200 (all
    train videos here), votes weighted exp(cos / 0.07) (sigma-videomae.md §3.7), test clips averaged; the
    dropped video has no features and is not scored."""
    import numpy as np
    from sklearn.neighbors import KNeighborsClassifier

    from vssl.data.datasets import load_videos

    knn_files = sorted(cached, key=lambda p: p.stat().st_mtime)[-2:]  # the last run's: knn's

    def split(name):
        (path,) = [p for p in knn_files if p.name.startswith(f"ssv2-{name}-")]
        stored = torch.load(path, weights_only=True)
        labels = {r.path: r.label for r in load_videos("ssv2", exp.annotation_dir(synth_root), name)}
        return stored["feats"].mean(1).numpy(), np.array([labels[p] for p in stored["paths"]]), stored

    x_tr, y_tr, _ = split("train")
    x_te, y_te, test = split("validation")
    assert test["dropped"] == [broken] and broken not in test["paths"] and len(test["paths"]) == 7
    knn = KNeighborsClassifier(n_neighbors=len(y_tr), metric="cosine", weights=lambda d: np.exp((1 - d) / 0.07))
    return float((knn.fit(x_tr, y_tr).predict(x_te) == y_te).mean() * 100)


def test_real_layout_errors_are_clear(tmp_path):
    from vssl.severe.runner import available_experiments, run_severe

    assert available_experiments(tmp_path) == EXPERIMENTS  # no synthsevere.json: the real experiments
    with pytest.raises(VsslError, match="not a directory"):
        available_experiments(tmp_path / "missing")
    with pytest.raises(VsslError, match="ucf101"):
        run_severe("r2plus1d_tiny", None, tmp_path, tmp_path / "o", "ucf101_1k", "quick", log=lambda s: None)


def test_row_recipes_follow_the_published_configs():
    """Per-row recipes from fmthoker/SEVERE-BENCHMARK action_recognition/configs/benchmark (severe-protocols.md
    §2.4): *_1000_examples_tubelet.yaml 18 epochs at 8/13/16; *_avid.yaml base lr 1e-3; *_scratch.yaml SS-v2
    25 epochs at 12/19/22 and Gym-99 20 at 10/15/18 with wd 1e-4, FX-S1/UB-S1 wd 1e-5."""
    paper = PROTOCOLS["paper"]

    def get(name, recipe):
        r = paper.recipe(EXPERIMENTS[name], row_recipe=recipe)
        return r.epochs, r.milestones, r.lr, r.weight_decay

    assert get("ucf101_1k", "tubelet") == get("gym99_1k", "tubelet") == (18, (8, 13, 16), 1e-4, 0.0)
    assert get("ucf101_1k", "severe") == (16, (6, 10, 14), 1e-4, 0.0) and get("fx_s1", "tubelet") == get("fx_s1", "severe")
    assert {get(n, "avid")[2] for n in ("ssv2", "gym99", "ucf101_1k", "gym99_1k", "fx_s1", "ub_s1")} == {1e-3}
    assert get("ucf_rc", "avid") == get("ucf_rc", "severe") and get("charades", "avid") == get("charades", "severe")
    assert get("ssv2", "scratch") == (25, (12, 19, 22), 1e-4, 1e-4) and get("gym99", "scratch") == (20, (10, 15, 18), 1e-4, 1e-4)
    assert get("ub_s1", "scratch")[3] == 1e-5 and get("ucf101_1k", "scratch") == get("ucf101_1k", "severe")
    with pytest.raises(ConfigError, match="unknown recipe 'fancy'"):
        paper.recipe(EXPERIMENTS["ssv2"], row_recipe="fancy")
    with pytest.raises(ConfigError, match="varies the paper protocol, not 'quick'"):
        PROTOCOLS["quick"].recipe(EXPERIMENTS["ssv2"], row_recipe="tubelet")


def _mini_ucf101(root: Path, make_video) -> Path:
    """A real-layout UCF101 (classInd, trainlist01/testlist01, videos/<Class>/<video>.mp4): 3 classes,
    2 train and 1 test video each."""
    ann = root / "ucf101" / "annotations"
    ann.mkdir(parents=True)
    classes = ["Jump", "Run", "Swim"]
    (ann / "classInd.txt").write_text("".join(f"{i + 1} {c}\n" for i, c in enumerate(classes)))
    train, test = [], []
    for i, c in enumerate(classes):
        for g, split in ((1, train), (2, train), (3, test)):
            name = f"{c}/v_{c}_g{g:02d}_c01"
            make_video(f"data/ucf101/videos/{name}.mp4", num_frames=12, height=32, width=40, seed=3 * i + g)
            split.append(f"{name}.avi {i + 1}\n" if split is train else f"{name}.avi\n")
    (ann / "trainlist01.txt").write_text("".join(train))
    (ann / "testlist01.txt").write_text("".join(test))
    return root


def test_paper_protocol_end_to_end_with_a_row_recipe(tmp_path, make_video):
    """The paper protocol at toy size (clip geometry shrunk, schedule untouched) with Tubelet-Contrast's
    recipe: 6 videos x 10 clips / batch 32 = 1 step per epoch, so 18 steps whose learning rate is 1e-4,
    x0.3 after epochs 8, 13 and 16 (derived by hand from the published config)."""
    import json

    from vssl.severe.runner import run_severe

    root = _mini_ucf101(tmp_path / "data", make_video)
    out, logs = tmp_path / "out", []
    toy = ["num_frames=4", "fps=0", "load_size=32", "train_size=0", "crop_size=32", "test_clips=2",
           "eval_batch_size=4", "num_workers=0"]
    (res,) = run_severe("r2plus1d_tiny", None, root, out, "ucf101_1k", "paper", seeds=[1], overrides=toy,
                        recipe="tubelet", log=logs.append)
    assert res.key.protocol == "paper+tubelet(" + ",".join(sorted(toy[:-1])) + ")"  # num_workers: speed only
    assert res.extra["row_recipe"] == "tubelet" and res.extra["recipe"]["epochs"] == 18
    assert res.timings["train_steps"] == 18 and (res.extra["num_train"], res.extra["num_test"]) == (6, 3)
    assert res.extra["num_scored"] == 3
    (run,) = (out / "runs").glob("*/ucf101_1k-paper+tubelet-*-seed1")
    lrs = [json.loads(line)["lr"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    expected = [1e-4 * 0.3 ** sum(epoch >= m for m in (8, 13, 16)) for epoch in range(18)]
    assert lrs == pytest.approx(expected, rel=1e-6)
    assert sorted(p.name for p in (run / "checkpoints").glob("step_*.pt"))[-1] == "step_00000018.pt"  # per epoch
    logs.clear()
    (again,) = run_severe("r2plus1d_tiny", None, root, out, "ucf101_1k", "paper", seeds=[1], overrides=toy,
                          recipe="tubelet", log=logs.append)
    assert logs[0].startswith("skip") and again.primary == res.primary


def test_docs_state_each_protocols_test_clips():
    """docs/severe.md's protocol table says how many test clips each protocol scores (it said 2 for quick
    and linear, which use 1 and 10)."""
    import re

    doc = (Path(__file__).resolve().parents[1] / "docs" / "severe.md").read_text()
    rows = {m.group(1): m.group(2) for m in re.finditer(r"^\| `([\w-]+)` \|.*\| ([^|]*) \|$", doc, re.M)}
    assert set(PROTOCOLS) <= set(rows)
    for name, protocol in PROTOCOLS.items():
        said = int(re.search(r"(\d+) (?:uniform )?clips?\b", rows[name]).group(1))
        assert said == protocol.recipe(EXPERIMENTS["gym99"]).test_clips, (name, rows[name])


def test_frozen_protocols_decode_synthetic_sized_clips(synth_root):
    """On SynthSEVERE, linear and knn decode quick's clips (not 32-frame, 128 px, 10-clip paper clips of
    32 px videos), counting included; their heads and pooling stay their own."""
    exps = synthetic_experiments(synth_root)
    fields = ("num_frames", "fps", "sampling", "load_size", "crop_size", "test_clips", "feature_clips")
    for exp in (exps["domain_a"], exps["counting"]):
        quick = PROTOCOLS["quick"].recipe(exp)
        for name in ("linear", "knn"):
            r = PROTOCOLS[name].recipe(exp)
            assert {f: getattr(r, f) for f in fields} == {f: getattr(quick, f) for f in fields}
            assert r.mode == name and r.pool == "mean"
    real = PROTOCOLS["knn"].recipe(EXPERIMENTS["ssv2"])
    assert (real.num_frames, real.load_size, real.test_clips) == (32, 128, 10)  # real data: paper clips
    assert PROTOCOLS["knn"].recipe(exps["domain_a"], ["test_clips=3"]).test_clips == 3
