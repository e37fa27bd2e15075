"""docs/design.md's recipes for adding a method and a dataset, followed with toy ones: what the recipe
names is all there is to change."""

from __future__ import annotations

import json
import textwrap

import pytest
import yaml

import vssl.data.datasets as datasets
import vssl.methods as methods
from vssl.config import RECIPES, load_config
from vssl.engine.run import train_from_config
from vssl.models import build_backbone

TOY_METHOD = textwrap.dedent('''
    from dataclasses import dataclass

    import torch
    from torch import nn


    class MeanColour(nn.Module):
        """Regresses a clip's mean colour from the backbone's features: a method in one file."""

        @dataclass
        class Config:
            scale: float = 1.0

        def __init__(self, cfg, backbone, run):
            super().__init__()
            self.backbone, self.scale = backbone, cfg.scale
            self.head = nn.Linear(backbone.feature_dim, 3)

        def training_step(self, batch):
            x = batch["video"].float() / 255
            target = x.mean(dim=(2, 3, 4)) * self.scale
            loss = nn.functional.mse_loss(self.head(self.backbone(x)), target)
            return loss, {"loss": loss.detach()}
''')


def test_a_method_is_one_file_and_one_registry_line(tmp_path, monkeypatch):
    (tmp_path / "toy_mean_colour.py").write_text(TOY_METHOD)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(methods._ENTRIES, "mean_colour", "toy_mean_colour:MeanColour")  # the one line

    recipe = yaml.safe_load((RECIPES / "finetune" / "toy.yaml").read_text())
    recipe["method"] = {"name": "mean_colour", "scale": 2.0}
    recipe["train"].update(max_steps=3, ckpt_every=3)
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    cfg = load_config(tmp_path / "recipe.yaml", [])
    assert methods.METHODS["mean_colour"].__name__ == "MeanColour" and cfg.method.params == {"scale": 2.0}

    summary = train_from_config(cfg, tmp_path / "run")
    assert summary["step"] == 3
    assert build_backbone("r2plus1d_tiny", checkpoint=tmp_path / "run" / "backbone.pt") is not None
    again = load_config(tmp_path / "run" / "config.yaml", [])  # the saved config builds the method again
    assert again.method.name == "mean_colour" and again.method.params == {"scale": 2.0}
    with pytest.raises(Exception, match="scal"):  # its params are validated like any method's
        load_config(tmp_path / "recipe.yaml", ["method.scal=1"])


def test_a_dataset_is_one_adapter_and_its_registry_entries(tmp_path, monkeypatch, capsys):
    from vssl.data.datasets.base import VideoList, VideoRecord, bad_line, finish, read_lines

    def pairs(annotations, split, fold=1, **opts):  # "<path> <label>" lines in <split>.txt
        path = tmp_path / "ann" / f"{split}.txt"
        records = []
        for lineno, line in read_lines(path):
            name, _, label = line.partition(" ")
            if not label.isdigit():
                raise bad_line(path, lineno, "expected '<path> <label>'", line)
            records.append(VideoRecord(name, int(label)))
        return finish(VideoList("pairs", split, records, ["a", "b"]), **opts)

    monkeypatch.setitem(datasets.ADAPTERS, "pairs", pairs)
    monkeypatch.setitem(datasets.SPLITS, "pairs", ("train", "test"))
    (tmp_path / "ann").mkdir()
    (tmp_path / "ann" / "train.txt").write_text("v1.mp4 0\nv2.mp4 1\nv3.mp4 1\n")
    (tmp_path / "ann" / "test.txt").write_text("v4.mp4 0\n")

    from vssl.cli import main

    assert main(["data", "summary", "--dataset", "pairs", "--annotations", str(tmp_path / "ann"), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary == {"dataset": "pairs", "num_classes": 2, "splits": {"train": 3, "test": 1}}
    assert len(datasets.load_videos("pairs", tmp_path / "ann", "train", num_examples=2, seed=0).records) == 2
    (tmp_path / "ann" / "test.txt").write_text("v4.mp4 zero\n")
    with pytest.raises(Exception, match=r"test\.txt:1: expected"):
        datasets.load_videos("pairs", tmp_path / "ann", "test")
