"""Typed run configuration: YAML files mapped onto dataclasses, and the recipes shipped with vssl.

A run config has six sections. ``method`` is special: its ``name`` picks a method from
``vssl.methods.METHODS`` and the remaining keys are validated against that method's own ``Config``
dataclass. Overrides use dotted keys: ``--set optim.lr=0.01 --set method.queue_size=4096``.

Errors (unknown key, wrong type) raise :class:`vssl.errors.ConfigError` whose one-line message names
the key and the file; the CLI turns it into exit status 2.

The recipes (``pretrain/``, ``finetune/``, ``severe/published/``) are package data in
:data:`RECIPES`, so an installed vssl has them wherever it runs: a path that does not exist but names
a shipped file (``configs/pretrain/videomae_tiny.yaml`` or ``pretrain/videomae_tiny.yaml``) is read
from there (:func:`find_recipe`).
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

import yaml

from vssl import typed as T
from vssl.errors import ConfigError


@dataclass
class DataConfig:
    dataset: str = "synthetic"  # adapter name, as in `vssl data summary --dataset`
    root: str = ""  # directory with the videos
    annotations: str = ""  # directory with the annotation files
    split: str = "train"
    fold: int = 1  # UCF101/HMDB51 split number
    subset: str = ""  # adapter option, e.g. "1k" for SEVERE's low-sample subsets
    fraction: float = 1.0  # class-balanced fraction of the training set (--data-fraction)
    num_frames: int = 16
    stride: int = 4  # frame stride; ignored when fps > 0
    # a stride drawn per training clip (Tubelet-Contrast: [1, 2, 3, 4]); empty = `stride`
    strides: list[int] = field(default_factory=list)
    jitter: bool = False  # per-index temporal jitter randint(0, stride - 1) in stride mode (Tubelet-Contrast)
    fps: float = 0.0  # sample at a target frame rate instead of a stride
    sampling: str = "random"  # random | segment (SSv2-style)
    load_size: int = 128  # decoded short side (aspect kept; crops are drawn from the whole frame)
    crop_size: int = 112  # network input size after (batched, on-device) augmentation
    backend: str = "pyav"  # pyav | torchcodec | decord
    decoder_threads: int = 0
    batch_size: int = 8
    num_workers: int = 2
    pin_memory: bool = True
    persistent_workers: bool = True  # evaluation loaders; the trainer re-seeds its workers every epoch
    # only for `dataset: random` (vssl.engine.toy.RandomClipDataset): items and classes
    random_size: int = 64
    random_classes: int = 4


@dataclass
class ModelConfig:
    backbone: str = "r2plus1d_tiny"  # a name in vssl.models.BACKBONES
    checkpoint: str = ""  # optional initial weights for the backbone
    kwargs: dict[str, Any] = field(default_factory=dict)  # **overrides for build_backbone


@dataclass
class OptimConfig:
    name: str = "adamw"  # adamw | adam | sgd
    lr: float = 1e-3
    weight_decay: float = 0.05
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    momentum: float = 0.9
    nesterov: bool = False
    fused: bool = True  # fused kernels where the device supports them


@dataclass
class ScheduleConfig:
    name: str = "cosine"  # cosine | step | constant
    warmup_steps: int = 0
    min_lr: float = 0.0
    milestones: list[int] = field(default_factory=list)  # step schedule, in optimizer steps
    gamma: float = 0.1
    total_steps: int = 0  # cosine horizon; 0 = train.max_steps (set larger for "cosine over 200, stop at 100")


@dataclass
class TrainConfig:
    max_steps: int = 1000  # optimizer steps
    grad_accum: int = 1
    clip_grad: float = 0.0  # 0 = off; else max global L2 norm
    precision: str = "auto"  # auto (bf16 on CUDA, fp32 on CPU) | bf16 | fp16 | fp32
    log_every: int = 10
    ckpt_every: int = 200
    keep_checkpoints: int = 2
    seed: int = 0
    deterministic: bool = False
    compile: bool = False
    # read the logged scalars (and check the loss) from the device every log_every steps and before
    # checkpoints, in one transfer, instead of once per step: the GPU step runs without waiting for
    # the host; a non-finite loss then stops the run up to log_every steps later (same message)
    defer_logs: bool = False
    channels_last: bool = True  # channels_last_3d for CNN backbones on CUDA
    device: str = "auto"
    tensorboard: bool = True
    progress: bool = True
    max_skipped_steps: int = 20  # fp16: steps in a row the gradient scaler may skip (inf/NaN) before the run stops


@dataclass
class MethodSection:
    name: str = "supervised"
    params: dict[str, Any] = field(default_factory=dict)  # validated against METHODS[name].Config


@dataclass
class RunConfig:
    method: MethodSection = field(default_factory=MethodSection)
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


# ---------------------------------------------------------------------------------------------------
# Loading, overrides, validation
# ---------------------------------------------------------------------------------------------------

RECIPES = Path(__file__).resolve().with_name("configs")  # the recipes shipped inside the package


def find_recipe(path: str | os.PathLike) -> Path:
    """``path`` when it exists; else the shipped recipe it names, relative to :data:`RECIPES` with or
    without a leading ``configs/`` (the folder's name in a source checkout and in the docs); else
    ``path`` unchanged, for the caller's not-found error."""
    path = Path(path)
    if path.exists() or path.is_absolute():
        return path
    parts = path.parts[1:] if path.parts[:1] == ("configs",) else path.parts
    shipped = RECIPES.joinpath(*parts) if parts else RECIPES
    return shipped if shipped.is_file() else path


def _read_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not a UTF-8 text file (byte {e.start}: {e.reason})") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read config file ({e.strerror or e})") from None
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"{path}{where}: invalid YAML: {problem}") from None
    except (ValueError, RecursionError) as e:  # PyYAML: an impossible date (2020-13-45), absurd nesting
        raise ConfigError(f"{path}: invalid YAML: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level")
    _check_acyclic(data, str(path))
    return data


def _check_acyclic(data: Any, source: str, _open: tuple = ()) -> None:
    """Refuse a YAML alias that contains itself (``a: &x [*x]``): it would recurse forever."""
    if isinstance(data, (dict, list)):
        if any(data is seen for seen in _open):
            raise ConfigError(f"{source}: invalid YAML: an alias refers to itself")
        for v in (data.values() if isinstance(data, dict) else data):
            _check_acyclic(v, source, (*_open, data))


def _split_method(section: Any, source: str) -> tuple[dict, dict]:
    """``method:`` accepts ``{name, params: {...}}`` or ``{name, key: value, ...}`` (flat)."""
    if section is None:
        return {}, {}
    if not isinstance(section, dict):
        raise ConfigError(f"{source}: method: expected a mapping, got {T.short(section)}")
    section = dict(section)
    head = {k: section.pop(k) for k in ("name",) if k in section}
    params = section.pop("params", None) or {}
    if not isinstance(params, dict):
        raise ConfigError(f"{source}: method.params: expected a mapping, got {T.short(params)}")
    return head, {**params, **section}


def parse_override(item: str) -> tuple[list[str], Any]:
    """Parse one ``--set a.b=value`` into (``["a", "b"]``, value parsed as a YAML scalar or list)."""
    key, sep, text = item.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(f"--set: expected KEY=VALUE with a dotted key, got {T.short(item)}")
    try:
        value = yaml.safe_load(text) if text.strip() else ""
    except (yaml.YAMLError, ValueError, RecursionError):  # ValueError: PyYAML's impossible dates
        value = text  # not YAML: keep the raw string (a path with odd characters, say)
    _check_acyclic(value, "--set")
    return key.split("."), value


def _apply_override(raw: dict, params: dict, parts: list[str], value: Any) -> None:
    """Write one override into the raw (not yet validated) config tree."""
    if parts[0] == "method" and len(parts) > 1 and parts[1] != "name":
        parts = parts[2:] if parts[1] == "params" else parts[1:]
        if not parts:
            raise ConfigError("--set: method.params cannot be set as a whole; set method.<key>=value")
        node = params
    else:
        node = raw
    for i, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"--set: '{'.'.join(parts[:i + 1])}' is not a section")
        node = child
    node[parts[-1]] = value


def _method_class(name: str, source: str) -> type:
    from vssl.methods import METHODS  # lazy: importing a method imports torch

    if name not in METHODS:
        raise ConfigError(f"{source}: method.name: unknown method {T.short(name)} (known: {', '.join(METHODS)})")
    return METHODS[name]


def load_config(path: str | os.PathLike, overrides: list[str] | tuple[str, ...] = ()) -> RunConfig:
    """Read a YAML run config (or a shipped recipe, :func:`find_recipe`), apply ``--set`` overrides and
    validate everything.

    Args:
        path: the YAML file. Sections are the fields of :class:`RunConfig`; ``method`` holds ``name``
            plus the method's own parameters (flat, or nested under ``params``).
        overrides: ``"a.b=value"`` strings; the value is parsed as YAML (``0.1``, ``true``, ``[1, 2]``).

    Returns:
        The validated :class:`RunConfig`; ``cfg.method.params`` holds every parameter of the method's
        ``Config`` (defaults filled in), so the saved config is fully resolved.

    Raises:
        ConfigError: one line naming the file (or ``--set``) and the dotted key.
    """
    path = find_recipe(path)
    return config_from_dict(_read_yaml(path), str(path), overrides)


def config_from_dict(data: dict, source: str, overrides: list[str] | tuple[str, ...] = ()) -> RunConfig:
    """:func:`load_config` of data already read (e.g. the ``"config"`` a training checkpoint carries);
    ``source`` names it in error messages. ``data`` is not modified."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of sections at the top level")
    raw = copy.deepcopy(data)
    head, params = _split_method(raw.pop("method", None), source)
    set_params: set[str] = set()
    overridden: set[str] = set()  # dotted keys given with --set: their errors name --set, not the file
    cfg = T.build(RunConfig, {**raw, "method": head}, "", source)
    for item in overrides:
        parts, value = parse_override(item)
        overridden.add(".".join(parts))
        if parts[0] == "method" and len(parts) > 1 and parts[1] != "name":
            _apply_override(raw, params, parts, value)
            set_params.add(parts[2] if parts[1] == "params" else parts[1])
            overridden.add(f"method.{parts[2] if parts[1] == 'params' else parts[1]}")
            continue
        single: dict = {}
        _apply_override(single, {}, parts, value)
        T.merge(cfg, single, "", "--set")
    cls = _method_class(cfg.method.name, source)
    typed = _method_params(cls, params, source, set_params)
    cfg.method.params = T.plain(dataclasses.asdict(typed))
    validate_config(cfg, source, overridden)
    return cfg


# ---------------------------------------------------------------------------------------------------
# Values: types are checked while building; ranges and choices here, before anything is built
# ---------------------------------------------------------------------------------------------------

_CHOICES = {
    "data.sampling": ("random", "segment"),
    "data.backend": ("pyav", "torchcodec", "decord"),  # vssl.data.video.BACKENDS (not imported: it needs torch)
    "optim.name": ("adamw", "adam", "sgd"),
    "schedule.name": ("cosine", "step", "constant"),
    "train.precision": ("auto", "bf16", "fp16", "fp32"),
}
_AT_LEAST = {  # smallest allowed value
    "data.fold": 1, "data.num_frames": 1, "data.stride": 1, "data.fps": 0, "data.load_size": 1, "data.crop_size": 1,
    "data.decoder_threads": -1, "data.batch_size": 1, "data.num_workers": 0, "data.random_size": 1,
    "data.random_classes": 1, "optim.lr": 0, "optim.weight_decay": 0, "optim.momentum": 0,
    "schedule.warmup_steps": 0, "schedule.min_lr": 0, "schedule.total_steps": 0, "train.max_steps": 0,
    "train.grad_accum": 1, "train.clip_grad": 0, "train.log_every": 1, "train.ckpt_every": 0,
    "train.keep_checkpoints": 0, "train.seed": 0, "train.max_skipped_steps": 0,
}
_DEVICE = re.compile(r"auto|cpu|mps|cuda(:\d+)?")


def validate_config(cfg: RunConfig, source: str = "config", overridden: set[str] = frozenset()) -> None:
    """Check ranges and choices of a typed config; raise a one-line ``ConfigError`` naming the key.

    Every float anywhere (method parameters included) must be finite; the run sections have the
    bounds of ``_AT_LEAST``/``_CHOICES`` and a few rules of their own. A value that passes is one the
    engine can start with, so a bad one is reported before any data or model is built.
    """
    def fail(key: str, value: Any, expected: str) -> None:
        parts = key.split("[")[0].split(".")
        given = any(".".join(parts[:i]) in overridden for i in range(1, len(parts) + 1))
        raise ConfigError(f"{'--set' if given else source}: {key}: expected {expected}, got {T.short(value)}")

    for key, value in T.leaves(config_to_dict(cfg)):
        if isinstance(value, float) and not math.isfinite(value):
            fail(key, value, "a finite number")
    for key, choices in _CHOICES.items():
        value = _get(cfg, key)
        if value not in choices:
            fail(key, value, f"one of {', '.join(choices)}")
    for key, low in _AT_LEAST.items():
        value = _get(cfg, key)
        if value < low:
            fail(key, value, f"a value >= {low}")
    if not 0 < cfg.data.fraction <= 1:
        fail("data.fraction", cfg.data.fraction, "0 < fraction <= 1")
    if any(k < 1 for k in cfg.data.strides):
        fail("data.strides", cfg.data.strides, "strides >= 1")
    if len(cfg.optim.betas) != 2 or not all(0 <= b < 1 for b in cfg.optim.betas):
        fail("optim.betas", cfg.optim.betas, "two values in [0, 1)")
    if cfg.schedule.gamma <= 0:
        fail("schedule.gamma", cfg.schedule.gamma, "a value > 0")
    if any(m < 0 for m in cfg.schedule.milestones):
        fail("schedule.milestones", cfg.schedule.milestones, "steps >= 0")
    if cfg.train.seed >= 2**32:
        fail("train.seed", cfg.train.seed, "a value < 2**32")
    if not _DEVICE.fullmatch(cfg.train.device):
        fail("train.device", cfg.train.device, "auto, cpu, mps, cuda or cuda:N")


def _get(cfg: RunConfig, dotted: str) -> Any:
    section, name = dotted.split(".")
    return getattr(getattr(cfg, section), name)


def _method_params(cls: type, params: dict, source: str, from_overrides: set[str]) -> Any:
    """Validate method parameters against ``cls.Config``; errors name the key and where it came from."""
    config_cls = getattr(cls, "Config", None)
    if config_cls is None or not dataclasses.is_dataclass(config_cls):
        raise ConfigError(f"{source}: method {cls.__name__} has no Config dataclass")
    hints = get_type_hints(config_cls)
    for k, v in params.items():
        where = "--set" if k in from_overrides else source
        if k not in hints:
            known = ", ".join(sorted(hints))
            raise ConfigError(f"{where}: unknown key 'method.{k}' for method {cls.__name__} (known: {known})")
        T.coerce(v, hints[k], f"method.{k}", where)
    try:
        return T.build(config_cls, params, "method.", source)
    except TypeError as e:  # a required field without default
        raise ConfigError(f"{source}: method: {e}") from None


def method_config(cfg: RunConfig) -> Any:
    """The typed parameters of ``cfg.method``: an instance of ``METHODS[cfg.method.name].Config``."""
    cls = _method_class(cfg.method.name, "config")
    return _method_params(cls, dict(cfg.method.params), "config", set())


def config_to_dict(cfg: RunConfig) -> dict:
    """The config as plain YAML-able data; method parameters are written flat under ``method``."""
    data = T.plain(dataclasses.asdict(cfg))
    method = data.pop("method")
    return {"method": {"name": method["name"], **method["params"]}, **data}


def save_config(cfg: RunConfig, path: str | Path) -> None:
    """Write the resolved config as YAML (atomically, so a killed run never leaves half a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
    os.replace(tmp, path)
