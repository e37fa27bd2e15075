"""Config loading: YAML -> dataclasses, --set overrides, one-line errors, method params, save/load."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from vssl.config import RECIPES, RunConfig, load_config, method_config, save_config
from vssl.errors import ConfigError

TOY = RECIPES / "finetune" / "toy.yaml"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "run.yaml"
    path.write_text(text)
    return path


def test_yaml_maps_onto_dataclasses_with_conversions(tmp_path):
    cfg = load_config(write(tmp_path, """
method: {name: supervised, num_classes: 5, scale: [0.2, 1]}
model: {backbone: vit_tiny, kwargs: {depth: 2}}
optim: {lr: 1, betas: [0.9, 0.95], weight_decay: 5e-2}
schedule: {name: step, milestones: [10, 20]}
train: {deterministic: true}
"""))
    assert isinstance(cfg, RunConfig)
    assert cfg.optim.lr == 1.0 and isinstance(cfg.optim.lr, float)  # int accepted for float
    assert cfg.optim.betas == [0.9, 0.95]
    assert cfg.optim.weight_decay == 0.05  # YAML 1.1 reads 5e-2 as a string; a float field takes it
    assert cfg.schedule.milestones == [10, 20]
    assert cfg.model.kwargs == {"depth": 2}
    assert cfg.train.deterministic is True
    assert cfg.data.batch_size == 8  # untouched default
    typed = method_config(cfg)
    assert typed.num_classes == 5 and typed.scale == [0.2, 1.0] and typed.flip is True  # defaults filled


def test_overrides_parse_yaml_values(tmp_path):
    cfg = load_config(TOY, ["optim.lr=1e-2", "optim.betas=[0.5, 0.6]", "train.compile=true",
                            "method.label_smoothing=0.1", "method.params.dropout=0.5",
                            "model.kwargs.width=8", "data.subset=1k"])
    assert cfg.optim.lr == 0.01 and cfg.optim.betas == [0.5, 0.6] and cfg.train.compile is True
    assert method_config(cfg).label_smoothing == 0.1 and method_config(cfg).dropout == 0.5
    assert cfg.model.kwargs == {"width": 8} and cfg.data.subset == "1k"
    assert cfg.train.max_steps == 12  # from the file


def test_nested_params_form_is_accepted(tmp_path):
    cfg = load_config(write(tmp_path, "method:\n  name: supervised\n  params: {num_classes: 3}\n"))
    assert method_config(cfg).num_classes == 3


@pytest.mark.parametrize("text, overrides, message", [
    ("optim: {lrr: 0.1}\n", [], "unknown key 'optim.lrr'"),
    ("optim: {lr: fast}\n", [], "optim.lr: expected float, got 'fast'"),
    ("train: {max_steps: 1.5}\n", [], "train.max_steps: expected int"),
    ("train: {deterministic: 1}\n", [], "train.deterministic: expected bool"),
    ("optim: {betas: [0.9, x]}\n", [], "optim.betas[1]: expected float"),
    ("method: {name: supervised, num_clases: 3}\n", [], "unknown key 'method.num_clases'"),
    ("method: {name: nope}\n", [], "unknown method 'nope'"),
    ("optim: {lr: [\n", [], "invalid YAML"),
    ("", ["optim.lrr=0.1"], "--set: unknown key 'optim.lrr'"),
    ("", ["train.max_steps=abc"], "--set: train.max_steps: expected int"),
    ("", ["method.dropoutt=0.1"], "--set: unknown key 'method.dropoutt'"),
    ("", ["optim.lr"], "--set: expected KEY=VALUE"),
])
def test_errors_are_one_line_and_name_key_and_source(tmp_path, text, overrides, message):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_config(path, overrides)
    text = str(err.value)
    assert message in text and "\n" not in text
    if not overrides:
        assert str(path) in text


def test_save_then_load_round_trips(tmp_path):
    cfg = load_config(TOY, ["optim.lr=0.02"])
    save_config(cfg, tmp_path / "out" / "config.yaml")
    again = load_config(tmp_path / "out" / "config.yaml")
    assert again == cfg


def test_cli_exits_2_with_one_line_and_no_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "vssl.cli", "finetune", "--config", str(TOY),
                           "--out", str(tmp_path / "run"), "--set", "optim.lrr=1"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "vssl: error: --set: unknown key 'optim.lrr'"
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("path", sorted((TOY.parents[1]).glob("*/*.yaml")), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_shipped_config_loads(path):
    cfg = load_config(path)
    assert cfg.train.max_steps > 0 and method_config(cfg) is not None


@pytest.mark.parametrize("config, dataset", [("ucf101_r2plus1d18.yaml", "ucf101"),
                                             ("ucf101_1k_r2plus1d18.yaml", "ucf101_1k")])
def test_ucf101_finetune_configs_run_severes_16_epochs(config, dataset, real_annotations):
    """SEVERE's UCF recipe (severe-protocols.md §2.4): 16 epochs of train videos x 10 clips / batch 32
    (drop_last), milestones 6/10/14; the step counts follow from the real lists (9537 and 1010 videos)."""
    from vssl.data.datasets import ADAPTERS

    cfg = load_config(TOY.parent / config, [f"data.annotations={real_annotations / 'ucf101'}"])
    assert cfg.data.dataset == dataset and (cfg.data.batch_size, cfg.schedule.gamma) == (32, 0.3)
    per_epoch = len(ADAPTERS[dataset](real_annotations / "ucf101", "train", 1)) * 10 // 32
    assert cfg.train.max_steps == 16 * per_epoch
    assert list(cfg.schedule.milestones) == [6 * per_epoch, 10 * per_epoch, 14 * per_epoch]
    comment = (TOY.parent / config).read_text()
    assert f"{per_epoch} steps" in comment and "same schedule" not in comment
