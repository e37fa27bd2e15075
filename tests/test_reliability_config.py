"""Issue 8.3: bad configuration and command lines (property-based, hypothesis).

Every bad input exits with status 2 and one line on stderr (``vssl: error: ...`` naming the key),
never a traceback, and nothing is created. ``load_config`` never raises anything but ``ConfigError``,
whatever the file or ``--set`` text. Argument-parser errors (unknown option, missing or mistyped
value) exit 2 as well.

Examples per property: ``VSSL_HYPOTHESIS_EXAMPLES`` (default 50; RELIABILITY.md's figures use
1000, see benchmarks/reliability.py).
"""

from __future__ import annotations

import dataclasses
import sys
import json
import math
import os
import typing
from pathlib import Path

import pytest
import yaml

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from vssl.cli import main
from vssl.config import RECIPES, RunConfig, load_config
from vssl.errors import ConfigError

TOY = str(RECIPES / "finetune" / "toy.yaml")
EXAMPLES = int(os.environ.get("VSSL_HYPOTHESIS_EXAMPLES", "50"))
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                           HealthCheck.filter_too_much])
# --- value strategies ---------------------------------------------------------------------------

def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


# printable text that is not a number (a float field would parse "1e3"); dumped as a JSON string,
# so YAML reads it back as exactly this string
WORDS = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=12).filter(
    lambda t: not _is_number(t))
SCALARS = {
    "bool": st.booleans(),
    "int": st.integers(-10**6, 10**6),
    "float": st.floats(-1e6, 1e6, allow_nan=False).filter(lambda x: x != int(x)),
    "text": WORDS,
    "list": st.lists(st.integers(-5, 5), max_size=3),
    "dict": st.dictionaries(st.text("abcxyz", min_size=1, max_size=4), st.integers(0, 9), min_size=1, max_size=2),
    "null": st.none(),
}
WRONG = {  # values of other types that the field's type must refuse (int -> float and int -> str are accepted)
    bool: ["int", "float", "text", "list", "dict", "null"],
    int: ["bool", "float", "text", "list", "dict", "null"],
    float: ["bool", "text", "list", "dict", "null"],
    str: ["bool", "float", "list", "dict"],
    list: ["bool", "int", "float", "text", "dict", "null"],
    dict: ["bool", "int", "float", "text", "list", "null"],
}


def _kind(tp) -> type | None:
    origin = typing.get_origin(tp) or tp
    if dataclasses.is_dataclass(tp):
        return dict
    return origin if origin in WRONG else None  # Any, unions: no "wrong type" to offer


def wrong_value(tp) -> st.SearchStrategy:
    kind = _kind(tp)
    options = [SCALARS[name] for name in WRONG[kind]]
    if kind is list:  # a list whose item has the wrong type
        item = typing.get_args(tp)[0] if typing.get_args(tp) else None
        if item is not None and _kind(item) is not None:
            options.append(st.lists(wrong_value(item), min_size=1, max_size=3))
    return st.one_of(options)


def typed_fields(cls) -> list[tuple[str, object]]:
    hints = typing.get_type_hints(cls)
    return [(f.name, hints[f.name]) for f in dataclasses.fields(cls) if _kind(hints[f.name]) is not None]


RUN_FIELDS = [(f"{section.name}.{name}", tp)
              for section in dataclasses.fields(RunConfig) if section.name != "method"
              for name, tp in typed_fields(typing.get_type_hints(RunConfig)[section.name])]

# values of the right type that are out of range or not a choice
NON_FINITE = st.sampled_from([math.nan, math.inf, -math.inf])
AT_LEAST = {"data.fold": 1, "data.num_frames": 1, "data.stride": 1, "data.load_size": 1, "data.crop_size": 1,
            "data.decoder_threads": -1, "data.batch_size": 1, "data.num_workers": 0, "data.random_size": 1,
            "data.random_classes": 1, "schedule.warmup_steps": 0, "schedule.total_steps": 0, "train.max_steps": 0,
            "train.grad_accum": 1, "train.log_every": 1, "train.ckpt_every": 0, "train.keep_checkpoints": 0,
            "train.seed": 0, "train.max_skipped_steps": 0}
NON_NEGATIVE = ["data.fps", "optim.lr", "optim.weight_decay", "optim.momentum", "schedule.min_lr", "train.clip_grad"]
CHOICES = {"data.sampling": ("random", "segment"), "data.backend": ("pyav", "torchcodec", "decord"),
           "optim.name": ("adamw", "adam", "sgd"), "schedule.name": ("cosine", "step", "constant"),
           "train.precision": ("auto", "bf16", "fp16", "fp32"), "train.device": ("auto", "cpu", "mps", "cuda")}
OUT_OF_RANGE = st.one_of(
    *[st.tuples(st.just(k), st.integers(-10**9, low - 1)) for k, low in AT_LEAST.items()],
    *[st.tuples(st.just(k), st.one_of(st.floats(-1e9, -1e-9), NON_FINITE)) for k in NON_NEGATIVE],
    *[st.tuples(st.just(k), WORDS.filter(lambda t, c=c: t not in c and not t.startswith("cuda:")))
      for k, c in CHOICES.items()],
    st.tuples(st.just("data.fraction"),
              st.one_of(st.floats(-1e6, 0.0), st.floats(1.0, 1e6, exclude_min=True), NON_FINITE)),
    st.tuples(st.just("optim.betas"), st.one_of(
        st.lists(st.floats(0, 0.99), max_size=5).filter(lambda b: len(b) != 2),
        st.tuples(st.floats(0, 0.99), st.one_of(st.floats(1.0, 1e6), st.floats(-1e6, -1e-9))).map(list))),
    st.tuples(st.just("schedule.gamma"), st.one_of(st.floats(-1e6, 0.0), NON_FINITE)),
    st.tuples(st.just("schedule.milestones"), st.lists(st.integers(-10**6, -1), min_size=1, max_size=3)),
    st.tuples(st.just("train.seed"), st.integers(2**32, 2**62)),
)


def yaml_text(value) -> str:
    """``value`` as a ``--set`` right-hand side that YAML reads back as the same value."""
    if isinstance(value, float) and not math.isfinite(value):
        return ".nan" if math.isnan(value) else (".inf" if value > 0 else "-.inf")
    return json.dumps(value)


def run_cli(argv: list[str], capsys) -> tuple[int, str]:
    try:
        rc = main(argv)
    except SystemExit as e:  # argparse
        rc = e.code
    return rc, capsys.readouterr().err


def assert_one_line_error(rc: int, err: str, *names: str) -> None:
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vssl: error: "), err
    assert "Traceback" not in err
    for name in names:
        assert name in lines[0], (name, lines[0])


# --- properties -----------------------------------------------------------------------------------

@SETTINGS
@given(field=st.sampled_from(RUN_FIELDS), data=st.data())
def test_wrong_type_in_set_exits_2_with_one_line(tmp_path_factory, capsys, field, data):
    key, tp = field
    value = data.draw(wrong_value(tp), label="value")
    out = tmp_path_factory.mktemp("run") / "out"
    rc, err = run_cli(["pretrain", "--config", TOY, "--out", str(out), "--set", f"{key}={yaml_text(value)}"], capsys)
    assert_one_line_error(rc, err, key, "--set")
    assert not out.exists()


@SETTINGS
@given(bad=OUT_OF_RANGE)
def test_out_of_range_values_exit_2_with_one_line(tmp_path_factory, capsys, bad):
    key, value = bad
    out = tmp_path_factory.mktemp("run") / "out"
    rc, err = run_cli(["finetune", "--config", TOY, "--out", str(out), "--set", f"{key}={yaml_text(value)}"], capsys)
    assert_one_line_error(rc, err, key)
    assert not out.exists()


METHOD_FIELDS = []
for _name in ("supervised", "video_contrast", "tubelet_contrast", "videomae", "sigma"):
    from vssl.methods import METHODS

    METHOD_FIELDS += [(_name, k, tp) for k, tp in typed_fields(METHODS[_name].Config)]


@SETTINGS
@given(field=st.sampled_from(METHOD_FIELDS), data=st.data(), in_file=st.booleans())
def test_wrong_method_parameter_types_exit_2(tmp_path_factory, capsys, field, data, in_file):
    method, key, tp = field
    value = data.draw(wrong_value(tp), label="value")
    folder = tmp_path_factory.mktemp("cfg")
    config = folder / "run.yaml"
    params = {"name": method, key: value} if in_file else {"name": method}
    config.write_text(yaml.safe_dump({"method": params, "data": {"dataset": "random"}}))
    extra = [] if in_file else ["--set", f"method.{key}={yaml_text(value)}"]
    rc, err = run_cli(["pretrain", "--config", str(config), "--out", str(folder / "out"), *extra], capsys)
    assert_one_line_error(rc, err, f"method.{key}", str(config) if in_file else "--set")
    assert not (folder / "out").exists()


YAML_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-10**12, 10**12), st.floats(), WORDS,
              st.sampled_from(["1e-3", "2020-13-45", "yes", "~", "0x1F", ".inf"])),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(WORDS, inner, max_size=3)),
    max_leaves=8)
KNOWN_KEYS = [k.split(".")[1] for k, _ in RUN_FIELDS] + ["name", "params", "lrr", "max_step"]
SECTIONS = st.dictionaries(
    st.sampled_from(["method", "model", "data", "optim", "schedule", "train", "trian", "extra"]),
    st.one_of(st.dictionaries(st.sampled_from(KNOWN_KEYS), YAML_VALUES, max_size=4), YAML_VALUES), max_size=4)


def _load_or_config_error(path, overrides=()) -> str:
    try:
        load_config(path, list(overrides))
    except ConfigError as e:
        text = str(e)
        assert text and "\n" not in text
        return "rejected"
    return "accepted"  # a config that loads has passed validate_config: the engine can start with it


@SETTINGS
@given(sections=SECTIONS)
def test_any_yaml_structure_loads_or_is_a_config_error(tmp_path_factory, sections):
    path = tmp_path_factory.mktemp("cfg") / "run.yaml"
    path.write_text(yaml.safe_dump(sections, allow_unicode=True))
    event(_load_or_config_error(path))  # --hypothesis-show-statistics shows how many loaded


@SETTINGS
@given(content=st.one_of(st.binary(max_size=200),
                         st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass"))))
def test_any_file_content_loads_or_is_a_config_error(tmp_path_factory, content):
    path = tmp_path_factory.mktemp("cfg") / "run.yaml"
    path.write_bytes(content)
    _load_or_config_error(path)


@SETTINGS
@given(item=st.one_of(st.text(max_size=40),
                      st.tuples(st.sampled_from([k for k, _ in RUN_FIELDS] + ["method.dropout", "train", "x.y"]),
                                st.text(max_size=20)).map("=".join)))
def test_any_override_text_loads_or_is_a_config_error(item):
    _load_or_config_error(TOY, [item])


COMMANDS = {  # a valid command line of each kind; the property breaks it
    "pretrain": ["pretrain", "--config", TOY, "--out", "OUT"],
    "finetune": ["finetune", "--config", TOY, "--out", "OUT"],
    "severe": ["severe", "--backbone", "r2plus1d_tiny", "--data-root", "DATA", "--out", "OUT"],
    "data check": ["data", "check", "--dataset", "csv", "--root", "DATA", "--annotations", "DATA"],
    "synth": ["synth", "OUT", "--preset", "tiny"],
    "weights convert": ["weights", "convert", "IN", "OUT", "--from", "moco"],
    "report": ["report", "DATA", "--format", "md"],
}
TYPED_OPTIONS = {"pretrain": ["--data-fraction"], "synth": ["--seed", "--workers"],
                 "data check": ["--workers", "--split"]}
CHOICE_OPTIONS = {"severe": ["--protocol"], "synth": ["--preset"], "report": ["--format"]}


@SETTINGS
@given(command=st.sampled_from(sorted(COMMANDS)), how=st.sampled_from(["drop", "unknown", "typed", "choice"]),
       data=st.data())
def test_bad_command_lines_exit_2_without_traceback(tmp_path_factory, capsys, command, how, data):
    argv = list(COMMANDS[command])
    required = [i for i, a in enumerate(argv) if a.startswith("--") and a not in ("--format", "--preset")]
    if how == "drop" and required:  # a required option left out, with its value
        i = data.draw(st.sampled_from(required), label="dropped")
        del argv[i:i + 2]
    elif how == "drop" and command in ("synth", "weights convert"):  # a required positional left out
        del argv[-3 if command == "synth" else 3]
    elif how == "unknown":
        argv.append("--" + data.draw(st.text("abcdefghijklmnopqrstuvwxyz-", min_size=3, max_size=12)
                                     .filter(lambda s: not s.startswith("-")), label="option"))
    elif how == "typed" and command in TYPED_OPTIONS:
        argv += [data.draw(st.sampled_from(TYPED_OPTIONS[command])),
                 data.draw(WORDS.filter(lambda t: not t.startswith("-")))]
    elif how == "choice" and command in CHOICE_OPTIONS:
        argv += [data.draw(st.sampled_from(CHOICE_OPTIONS[command])), data.draw(
            WORDS.filter(lambda t: t not in ("paper", "quick", "quick-ft", "linear", "knn", "tiny", "small", "base",
                                             "md", "csv", "json", "html") and not t.startswith("-")))]
    else:
        argv.insert(len(argv) - 1 if command == "synth" else 1, "--bogus-option")
    folder = tmp_path_factory.mktemp("cli")
    argv = [str(folder / "missing") if a in ("OUT", "DATA", "IN") else a for a in argv]
    rc, err = run_cli(argv, capsys)
    assert rc == 2, (argv, err)
    assert "Traceback" not in err and err.strip().splitlines()[-1].startswith("vssl"), err
    assert "error:" in err.strip().splitlines()[-1]


@SETTINGS
@given(seeds=st.text(max_size=12), backbone=st.one_of(st.just("r2plus1d_tiny"), WORDS))
def test_severe_options_are_checked_before_any_work(tmp_path_factory, capsys, seeds, backbone):
    folder = tmp_path_factory.mktemp("severe")
    rc, err = run_cli(["severe", f"--backbone={backbone}", "--data-root", str(folder / "no-data"),
                       "--out", str(folder / "out"), f"--seeds={seeds}"], capsys)
    assert_one_line_error(rc, err)
    assert any(opt in err for opt in ("--seeds", "--backbone", "--data-root")), err
    assert not (folder / "out").exists()


# --- a few explicit cases the properties do not reach -------------------------------------------

@pytest.mark.parametrize("overrides, names", [
    (["model.kwargs={no_such_argument: 1}"], ["cannot build it from this config"]),
    (["model.backbone=resnet9000"], ["model.backbone", "resnet9000"]),
    (["model.checkpoint=/no/such/weights.pt"], ["model.checkpoint"]),
    (["data.dataset=csv", "data.annotations=/no/such/dir"], ["data.annotations"]),
])
def test_values_checked_when_the_run_starts(tmp_path, capsys, overrides, names):
    args = [a for o in overrides for a in ("--set", o)]
    rc, err = run_cli(["pretrain", "--config", TOY, "--out", str(tmp_path / "out"), *args], capsys)
    assert_one_line_error(rc, err, *names)


def test_config_file_errors(tmp_path, capsys):
    cases = {"binary.yaml": b"\x89PNG\r\n\x1a\n\x00\x00", "date.yaml": b"train: {max_steps: 2020-13-45}\n",
             "alias.yaml": b"train: &x {a: *x}\n", "list.yaml": b"- 1\n- 2\n"}
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
        rc, err = run_cli(["pretrain", "--config", str(tmp_path / name), "--out", str(tmp_path / "o")], capsys)
        assert_one_line_error(rc, err, name)
    rc, err = run_cli(["pretrain", "--config", str(tmp_path), "--out", str(tmp_path / "o")], capsys)  # a folder
    assert_one_line_error(rc, err, str(tmp_path))


# --- values that used to be stored as results, or ended in a traceback ---------------------------

@pytest.mark.parametrize("override, names", [
    ("steps=-3", ["steps=-3", ">= 0"]), ("knn_k=0", ["knn_k=0", ">= 1"]), ("test_clips=0", ["test_clips=0"]),
    ("batch_size=0", ["batch_size"]), ("lr=0", ["lr=0", "> 0"]), ("ensemble=median", ["ensemble", "mean, max"]),
    ("crop_scale=[0.5, 0.2]", ["crop_scale"]), ("dropout=1.5", ["dropout"]),
])
def test_out_of_range_recipe_values_are_refused_before_any_work(tmp_path, capsys, override, names):
    rc, err = run_cli(["severe", "--backbone", "r2plus1d_tiny", "--data-root", str(tmp_path), "--out",
                       str(tmp_path / "out"), "--protocol", "knn", "--experiments", "ucf101_1k", "--set", override],
                      capsys)
    assert_one_line_error(rc, err, *names)
    assert not (tmp_path / "out").exists()  # nothing stored


def test_a_device_this_machine_lacks_is_one_line(tmp_path, capsys, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    rc, err = run_cli(["severe", "--backbone", "r2plus1d_tiny", "--data-root", str(tmp_path), "--out",
                       str(tmp_path / "out"), "--device", "cuda"], capsys)
    assert_one_line_error(rc, err, "device 'cuda'", "0 CUDA device")
    rc, err = run_cli(["pretrain", "--config", TOY, "--out", str(tmp_path / "run"), "--set", "train.device=cuda:1"],
                      capsys)
    assert_one_line_error(rc, err, "cuda:1")
    assert not (tmp_path / "out").exists() and not (tmp_path / "run" / "final.pt").exists()


def _check_tree(tmp_path, make_video) -> list[str]:
    videos = make_video("good.mp4").parent
    (tmp_path / "ann").mkdir()
    for split in ("train", "test"):
        (tmp_path / "ann" / f"{split}.csv").write_text("path,label\ngood.mp4,a\n")
    return ["data", "check", "--dataset", "csv", "--annotations", str(tmp_path / "ann"), "--root", str(videos),
            "--workers", "1"]


def test_data_check_refuses_an_unknown_or_missing_backend(tmp_path, make_video, capsys, monkeypatch):
    args = _check_tree(tmp_path, make_video)
    rc, err = run_cli([*args, "--backend", "foo"], capsys)
    assert_one_line_error(rc, err, "--backend", "'foo'", "pyav, torchcodec, decord")
    monkeypatch.setitem(sys.modules, "torchcodec", None)  # as when it is not installed: import fails
    monkeypatch.delitem(sys.modules, "torchcodec.decoders", raising=False)
    rc, err = run_cli([*args, "--backend", "torchcodec"], capsys)
    assert_one_line_error(rc, err, "--backend torchcodec", "not usable", "pyav")
    rc, err = run_cli([*args, "--backend", "pyav"], capsys)
    assert rc == 0 and "Traceback" not in err  # the good video is readable with a usable decoder


def test_a_damaged_dino_checkpoint_is_one_line(tmp_path, capsys):
    import torch

    good = tmp_path / "dino.pth"
    torch.save({"cls_token": torch.zeros(1, 1, 192)}, good)
    (tmp_path / "damaged.pth").write_bytes(good.read_bytes()[:40])
    sigma = str(Path(TOY).parents[1] / "pretrain" / "sigma_dino_tiny.yaml")
    for name, words in (("damaged.pth", ["damaged.pth"]), ("dino.pth", ["dino.pth", "missing keys"])):
        rc, err = run_cli(["pretrain", "--config", sigma, "--out", str(tmp_path / name[:-4]), "--set",
                           "data.dataset=random", "--set", f"method.dino_checkpoint={tmp_path / name}"], capsys)
        assert_one_line_error(rc, err, "method.dino_checkpoint", *words)
