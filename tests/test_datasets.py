"""Dataset adapters against the real annotation files (counts from annotations/README.md) and fixtures."""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from conftest import ANNOTATIONS as ANN
from vssl.data.datasets import ADAPTERS, SPLITS, VideoRecord, balanced_subset, fraction_subset, split_names
from vssl.data.datasets.base import MissingAnnotationError
from vssl.errors import AnnotationError

real = pytest.mark.usefixtures("real_annotations")  # fails, never skips, without ../shared


def counts(name: str, folder: str, fold: int = 1, **opts) -> dict[str, int]:
    return {s: len(ADAPTERS[name](ANN / folder, s, fold, **opts)) for s in SPLITS[name]}


# ---- real annotation files: every count of annotations/README.md ----------------------------------


@real
@pytest.mark.parametrize("fold,train,test", [(1, 9537, 3783), (2, 9586, 3734), (3, 9624, 3696)])
def test_ucf101_folds(fold, train, test):
    assert counts("ucf101", "ucf101", fold) == {"train": train, "test": test}
    videos = ADAPTERS["ucf101"](ANN / "ucf101", "test", fold)
    assert videos.num_classes == 101 and videos.classes[0] == "ApplyEyeMakeup"
    r = videos.records[-1]
    assert r.path.startswith("YoYo/") and r.path.endswith(".avi") and r.label == 100


@real
def test_hmdb51_split1():
    assert counts("hmdb51", "hmdb51") == {"train": 3570, "test": 1530}
    videos = ADAPTERS["hmdb51"](ANN / "hmdb51", "train")
    assert videos.num_classes == 51 and videos.classes[0] == "brush_hair"  # editor swap file ignored
    assert videos.records[0].path == "brush_hair/April_09_brush_hair_u_nm_np1_ba_goo_0.avi"


@real
def test_ssv2_validation_and_unlabeled_test():
    val = ADAPTERS["ssv2"](ANN / "ssv2", "validation")
    assert len(val) == 24777 and val.num_classes == 174
    first = val.records[0]  # "Spinning [something] that quickly stops spinning"
    assert first.path == "74225.webm" and val.classes[first.label] == "Spinning something that quickly stops spinning"
    assert len(ADAPTERS["ssv2"](ANN / "ssv2", "test")) == 27157
    with pytest.raises(MissingAnnotationError, match="something-something-v2-train.json"):
        ADAPTERS["ssv2"](ANN / "ssv2", "train")


@real
def test_finegym_lists_and_subsets():
    assert counts("gym99", "finegym") == {"train": 20484, "val": 8521}
    assert counts("gym288", "finegym") == {"train": 22671, "val": 9646}
    assert ADAPTERS["gym288"](ANN / "finegym", "val").num_classes == 288
    fx = ADAPTERS["fx_s1"](ANN / "finegym", "train")
    assert (len(fx), fx.num_classes) == (1882, 11) and set(fx.labels) == set(range(11))
    assert len(ADAPTERS["fx_s1"](ANN / "finegym", "val")) == 777
    ub = ADAPTERS["ub_s1"](ANN / "finegym", "val")
    assert (len(ub), ub.num_classes) == (1471, 15) and set(ub.labels) == set(range(15))
    assert len(ADAPTERS["ub_s1"](ANN / "finegym", "train")) == 3511
    # the synthetic benchmark passes its own range through the same option
    custom = ADAPTERS["gym99"](ANN / "finegym", "val", label_range=(74, 88))
    assert [r.path for r in custom] == [r.path for r in ub]
    clip = ADAPTERS["gym99"](ANN / "finegym", "train").records[0]
    assert clip == VideoRecord("A0xAXXysHUo_E_002184_002237_A_0035_0036.avi", 93, {})


@real
def test_finegym_org_fallback(tmp_path):
    (tmp_path / "gym99_val_org.txt").write_text((ANN / "finegym" / "gym99_val_org.txt").read_text())
    videos = ADAPTERS["gym99"](tmp_path, "val")
    assert len(videos) == 8521 and videos.records[0].path == "0LtLS9wROrk_E_002407_002435_A_0003_0005.avi"


@real
def test_severe_1k_subsets():
    gym = ADAPTERS["gym99_1k"](ANN / "finegym", "train")
    assert len(gym) == 1089 and set(Counter(gym.labels).values()) == {11}
    assert len(ADAPTERS["gym99_1k"](ANN / "finegym", "val")) == 8521  # test stays full
    ucf = ADAPTERS["ucf101_1k"](ANN / "ucf101", "train")
    assert len(ucf) == 1010 and set(Counter(ucf.labels).values()) == {10}
    assert len(ADAPTERS["ucf101_1k"](ANN / "ucf101", "test")) == 3783
    # any adapter takes num_examples for its train split
    full = ADAPTERS["diving48"](ANN / "diving48", "train")
    sub = ADAPTERS["diving48"](ANN / "diving48", "train", num_examples=480)
    per_class = math.ceil(480 / len(set(full.labels)))
    expected = sum(min(per_class, n) for n in Counter(full.labels).values())
    assert len(sub) == expected and max(Counter(sub.labels).values()) == per_class
    assert len(ADAPTERS["ucf101"](ANN / "ucf101", "train", subset="1k")) == 1010


def severe_get_subset_data(video_names, annotations, num_of_examples, seed=99999):
    """SEVERE's get_subset_data (action_recognition/datasets/utils.py), transcribed as the reference."""
    examples_per_class = int(math.ceil(num_of_examples / len(set(annotations))))
    random_state = np.random.RandomState(seed)
    annotations, video_names = np.array(annotations), np.array(video_names)
    names = []
    for class_label in set(annotations):
        idx = np.where(annotations == class_label)
        k = min(examples_per_class, idx[0].shape[0])
        names.extend(video_names[idx[0][np.array(random_state.choice(idx[0].shape[0], k, replace=False))]])
    return list(names)


@real
@pytest.mark.parametrize("name,folder", [("ucf101", "ucf101"), ("gym99", "finegym")])
def test_balanced_subset_matches_severe_draw_for_draw(name, folder):
    full = ADAPTERS[name](ANN / folder, "train")
    expected = severe_get_subset_data([r.path for r in full], full.labels, 1000)
    assert [r.path for r in balanced_subset(full.records, 1000, seed=99999)] == expected


def test_balanced_subset_short_class_gives_all():
    records = [VideoRecord(f"a{i}", 0) for i in range(3)] + [VideoRecord(f"b{i}", 1) for i in range(20)]
    out = balanced_subset(records, num_examples=10)  # 5 per class; class 0 has only 3
    assert Counter(r.label for r in out) == {0: 3, 1: 5}
    assert balanced_subset(records, 10) == out  # deterministic


def test_fraction_subset_per_class_ceil():
    records = [VideoRecord(f"v{i}", i % 3) for i in range(31)]  # 11, 10, 10
    out = fraction_subset(records, 0.25, seed=1)
    assert Counter(r.label for r in out) == {0: 3, 1: 3, 2: 3}
    assert out == sorted(out, key=lambda r: int(r.path[1:]))  # file order kept
    assert fraction_subset(records, 1.0) == records


@real
def test_ucfrep_counts_and_meta():
    train = ADAPTERS["ucfrep"](ANN / "ucfrep", "train")
    val = ADAPTERS["ucfrep"](ANN / "ucfrep", "val")
    assert (len(train), len(val), train.num_classes, val.num_classes) == (421, 105, 23, 23)
    assert train.task == "counting"
    assert min(train.labels) == 2 and max(train.labels) == 53 and round(np.mean(train.labels), 1) == 6.6
    assert min(val.labels) == 2 and max(val.labels) == 32
    r = next(r for r in train if r.path == "BenchPress/v_BenchPress_g01_c01.avi")
    assert r.label == 2.0 and r.meta["temporal_bound"] == [1, 36, 122]
    assert (r.meta["start_frame"], r.meta["end_frame"]) == (1, 122)
    assert "HandStandPushups" in train.classes


@real
def test_ucfrep_extracted_folder(tmp_path):
    import zipfile

    with zipfile.ZipFile(ANN / "ucfrep" / "ucf526_annotations.zip") as zf:
        zf.extractall(tmp_path, [n for n in zf.namelist() if n.startswith("annotations/val/")])
    assert len(ADAPTERS["ucfrep"](tmp_path, "val")) == 105


@real
def test_diving48():
    assert counts("diving48", "diving48") == {"train": 15027, "test": 1970}
    train = ADAPTERS["diving48"](ANN / "diving48", "train")
    assert train.num_classes == 48 and train.records[0].path == "-mmq0PT-u8k_00155.mp4"
    assert train.classes[0] == "Back 15som 05Twis FREE" and train.records[0].meta == {"start_frame": 0, "end_frame": 48}


@real
def test_kinetics400_csv_and_list():
    val = ADAPTERS["kinetics400"](ANN / "kinetics400", "val")
    assert len(val) == 19906 and val.num_classes == 400
    assert val.records[0].path == "abseiling/0wR5jVB-WPk_000417_000427.mp4" and val.records[0].label == 0
    listed = ADAPTERS["kinetics400"](ANN / "kinetics400", "val", source="list")
    assert len(listed) == 19326 and listed.num_classes == 400
    # the list's labels follow classInd (folder-name order): every clip's class agrees with the CSV
    by_name = {Path(r.path).stem: val.classes[r.label] for r in val}
    assert all(by_name[Path(r.path).stem] == listed.classes[r.label] for r in listed)
    assert all(r.path.split("/")[0] == listed.classes[r.label] for r in listed)


@real
def test_mini_kinetics():
    assert counts("mini_kinetics", "mini_kinetics") == {"train": 77266, "val": 4907}
    train = ADAPTERS["mini_kinetics"](ANN / "mini_kinetics", "train")
    assert train.num_classes == 200 and train.classes[1] == "air drumming"
    assert train.records[0] == VideoRecord("kIRmvrmc2nM_000020_000030.mp4", 3, {})


# ---- malformed input names file and line ----------------------------------------------------------


def test_malformed_lines_name_file_and_line(tmp_path):
    (tmp_path / "classInd.txt").write_text("1 Jump\r\n2 Wave\r\n")
    (tmp_path / "trainlist01.txt").write_text("Jump/a.avi 1\nRun/b.avi 3\n")
    with pytest.raises(AnnotationError, match=r"trainlist01\.txt:2: class folder 'Run'"):
        ADAPTERS["ucf101"](tmp_path, "train")
    (tmp_path / "gym99_train.txt").write_text("a.avi 1\nb.avi 1\n\nc.avi x\n")
    with pytest.raises(AnnotationError, match=r"gym99_train\.txt:4: label 'x' is not an integer"):
        ADAPTERS["gym99"](tmp_path, "train")
    (tmp_path / "gym99_val.txt").write_text("a.avi 1\nb.avi 99\n")
    with pytest.raises(AnnotationError, match=r"gym99_val\.txt:2: label 99 outside 0\.\.98"):
        ADAPTERS["gym99"](tmp_path, "val")
    (tmp_path / "action_names.txt").write_text("abseiling 1\nair drumming 2\n")
    (tmp_path / "val_split_1.txt").write_text("x_000001_000011 1\ny_000001_000011\n")
    with pytest.raises(AnnotationError, match=r"val_split_1\.txt:2: expected"):
        ADAPTERS["mini_kinetics"](tmp_path, "val")
    (tmp_path / "kinetics_val.csv").write_text("label,youtube_id,time_start,time_end,split,is_cc\n"
                                               "abseiling,abc,1,11,val,0\nabseiling,def,x,11,val,0\n")
    with pytest.raises(AnnotationError, match=r"kinetics_val\.csv:3: time_start"):
        ADAPTERS["kinetics400"](tmp_path, "val")
    (tmp_path / "Diving48_vocab.json").write_text('[["Back", "15som"],\n ["Front", "PIKE"]\n')
    with pytest.raises(AnnotationError, match=r"Diving48_vocab\.json:3: invalid JSON"):
        ADAPTERS["diving48"](tmp_path, "train")


def test_unknown_split_and_missing_file(tmp_path):
    with pytest.raises(AnnotationError, match="unknown split 'val'"):
        ADAPTERS["ucf101"](tmp_path, "val")
    with pytest.raises(MissingAnnotationError, match="classInd.txt"):
        ADAPTERS["ucf101"](tmp_path, "train")


# ---- fixtures for formats that are not shipped ----------------------------------------------------

CHARADES_HEADER = "id,subject,scene,quality,relevance,verified,script,objects,descriptions,actions,length\n"


def write_charades(folder: Path, rows: str) -> None:
    (folder / "Charades_v1_classes.txt").write_text("".join(f"c{i:03d} action {i}\n" for i in range(157)))
    (folder / "Charades_v1_train.csv").write_text(CHARADES_HEADER + rows)
    (folder / "Charades_v1_test.csv").write_text(CHARADES_HEADER + 'ZZ1,HR1,Hall,5,6,Yes,"s","o","d",,10.0\n')


def test_charades_fixture(tmp_path):
    write_charades(tmp_path, '46GP8,HR43,Kitchen,6,7,Yes,"A, b","x;y","d","c092 11.90 21.20;c147 0.00 12.60;c092 1 2",24.83\n'
                             'N11GT,P0,Bath,6,7,Yes,"s","o","d",c000 0.0 3.5,30.0\n')
    train = ADAPTERS["charades"](tmp_path, "train")
    assert train.task == "multilabel" and train.num_classes == 157 and train.classes[92] == "action 92"
    a, b = train.records
    assert (a.path, a.label, a.meta["length"]) == ("46GP8.mp4", [92, 147], 24.83)
    assert a.meta["segments"][0] == (92, 11.9, 21.2) and len(a.meta["segments"]) == 3
    assert (b.label, split_names("charades")) == ([0], ("train", "test"))
    test = ADAPTERS["charades"](tmp_path, "test")
    assert test.records[0].label == [] and test.records[0].path == "ZZ1.mp4"


def test_charades_bad_action_names_line(tmp_path):
    write_charades(tmp_path, 'A,1,s,1,1,Yes,"","","",c010 1 2,5\nB,1,s,1,1,Yes,"","","",c999 1 2,5\n')
    with pytest.raises(AnnotationError, match=r"Charades_v1_train\.csv:3: action class 'c999'"):
        ADAPTERS["charades"](tmp_path, "train")


def test_csv_manifest_classification_by_name(tmp_path):
    (tmp_path / "train.csv").write_text("path,label,source\nclips/a.mp4,wave,cam1\nclips/b.mp4,jump,cam2\n")
    (tmp_path / "test.csv").write_text("path,label\nclips/c.mp4,run\n")
    train = ADAPTERS["csv"](tmp_path, "train")
    assert train.classes == ["jump", "run", "wave"]  # from every split, sorted
    assert [(r.path, r.label, r.meta) for r in train] == [("clips/a.mp4", 2, {"source": "cam1"}),
                                                          ("clips/b.mp4", 0, {"source": "cam2"})]
    assert ADAPTERS["csv"](tmp_path, "test").records[0].label == 1
    assert split_names("csv", tmp_path) == ("train", "test")


def test_csv_manifest_ids_classes_txt_multilabel_counting(tmp_path):
    ids = tmp_path / "ids"
    ids.mkdir()
    (ids / "train.csv").write_text("path,label\na.mp4,0\nb.mp4,3\n")
    assert ADAPTERS["csv"](ids, "train").classes == ["0", "1", "2", "3"]
    multi = tmp_path / "multi"
    multi.mkdir()
    (multi / "classes.txt").write_text("sit\nstand\nwalk\n")
    (multi / "val.csv").write_text("path,labels\na.mp4,walk;sit\nb.mp4,stand 2\nc.mp4,\n")
    videos = ADAPTERS["csv"](multi, "val")
    assert videos.task == "multilabel" and [r.label for r in videos] == [[0, 2], [1, 2], []]
    count = tmp_path / "count"
    count.mkdir()
    (count / "train.csv").write_text("path,count\na.mp4,12\nb.mp4,3.5\n")
    videos = ADAPTERS["csv"](count, "train")
    assert videos.task == "counting" and videos.labels == [12.0, 3.5] and videos.classes == []
    (count / "test.csv").write_text("path,count\na.mp4,twelve\n")
    with pytest.raises(AnnotationError, match=r"test\.csv:2: count 'twelve'"):
        ADAPTERS["csv"](count, "test")
    (multi / "train.csv").write_text("path,labels\na.mp4,sit\nb.mp4,fly\n")
    with pytest.raises(AnnotationError, match=r"train\.csv:3: unknown class 'fly'"):
        ADAPTERS["csv"](multi, "train")


def test_csv_manifest_bad_header(tmp_path):
    (tmp_path / "train.csv").write_text("file,label\na.mp4,0\n")
    with pytest.raises(AnnotationError, match=r"train\.csv:1: header"):
        ADAPTERS["csv"](tmp_path, "train")


def test_root_drops_missing_videos_before_subset(tmp_path):
    (tmp_path / "train.csv").write_text("path,label\n" + "".join(f"v{i}.avi,{i % 2}\n" for i in range(8)))
    root = tmp_path / "videos"
    root.mkdir()
    for i in (0, 1, 2, 5):
        (root / f"v{i}.mp4").write_bytes(b"")  # re-encoded tree: other extension still counts
    videos = ADAPTERS["csv"](tmp_path, "train", root=root)
    assert sorted(r.path for r in videos) == ["v0.avi", "v1.avi", "v2.avi", "v5.avi"]
    assert videos.missing == ["v3.avi", "v4.avi", "v6.avi", "v7.avi"]  # named for the run's summary
    subset = ADAPTERS["csv"](tmp_path, "train", root=root, num_examples=2)
    assert len(subset) == 2 and subset.missing == videos.missing  # missing counted before subsetting


def test_every_adapter_is_listed_with_splits():
    assert set(ADAPTERS) == set(SPLITS) == {
        "ucf101", "hmdb51", "kinetics400", "mini_kinetics", "ssv2", "gym99", "gym288", "fx_s1", "ub_s1",
        "gym99_1k", "ucf101_1k", "ucfrep", "charades", "diving48", "csv"}
    assert all(SPLITS[n][0] == "train" and len(SPLITS[n]) == 2 for n in SPLITS)
    json.dumps(SPLITS)


@real
def test_label_set_option_and_charades_val_alias(tmp_path):
    fx = ADAPTERS["gym99"](ANN / "finegym", "val", label_set="fx_s1")
    assert (len(fx), fx.num_classes) == (777, 11)
    with pytest.raises(AnnotationError, match="unknown label_set"):
        ADAPTERS["gym99"](ANN / "finegym", "val", label_set="fx_s9")
    write_charades(tmp_path, "")
    assert len(ADAPTERS["charades"](tmp_path, "val")) == 1  # PySlowFast calls the test split "val"


def test_gym_lists_with_fewer_classes_agree_across_splits(tmp_path):
    (tmp_path / "gym99_train.txt").write_text("a.avi 0\nb.avi 4\nc.avi 2\n")
    (tmp_path / "gym99_val_org.txt").write_text("d 1\ne 5\n")
    train, val = ADAPTERS["gym99"](tmp_path, "train"), ADAPTERS["gym99"](tmp_path, "val")
    assert train.num_classes == val.num_classes == 6 and [r.path for r in val] == ["d.avi", "e.avi"]
    assert ADAPTERS["gym99"](tmp_path, "train", label_range=(2, 4)).labels == [2, 0]


@real
def test_ucfrep_videos_are_the_ucf101_files(tmp_path):
    """Every UCFRep video is found in a UCF101 tree laid out as UCF101's own lists name its files (the
    independent reference), HandstandPushups included; the counted part is kept as 0-based frames."""
    listed = [r.path for s in ("train", "test") for r in ADAPTERS["ucf101"](ANN / "ucf101", s, 1)]
    counted = {Path(r.path).stem for s in ("train", "val") for r in ADAPTERS["ucfrep"](ANN / "ucfrep", s)}
    for path in (p for p in listed if Path(p).stem in counted):  # the UCF101 files of the counted videos
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).touch()
    for split, n, handstand in (("train", 421, 19), ("val", 105, 5)):  # 24 HandStandPushups videos
        videos = ADAPTERS["ucfrep"](ANN / "ucfrep", split, root=tmp_path)
        assert len(videos) == n and videos.missing == []
        found = [r for r in videos if r.meta["class"] == "HandStandPushups"]
        assert len(found) == handstand and found[0].path.startswith("HandstandPushups/v_HandStandPushups_g")
    r = next(r for r in ADAPTERS["ucfrep"](ANN / "ucfrep", "train") if r.meta["start_frame"] > 1)
    assert r.meta["frame_range"] == (r.meta["start_frame"] - 1, r.meta["end_frame"] - 1)
