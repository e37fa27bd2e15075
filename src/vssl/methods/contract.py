"""What the engine expects of a method (:class:`Method`), and the weight-decay rule every method's
parameter groups follow (:func:`decays`).

A method is an ``nn.Module`` class registered in :data:`vssl.methods.METHODS`, built as
``Method(cfg: Config, backbone: nn.Module, run: RunConfig)`` where ``Config`` is a nested dataclass
(its ``method.params``, validated by :mod:`vssl.config`). The engine calls :meth:`Method.training_step`
once per optimizer step (per micro-batch with gradient accumulation) and exports ``method.backbone``.
It owns no loop, optimizer, device or file.

Optional members, looked up with ``hasattr``/``getattr`` by the engine:

- ``num_clips`` (class attribute, default 1): clips decoded per dataset item; 2 for video contrast,
  whose batch ``video`` is then (B, 2, C, T, H, W).
- ``forward_loss(...) -> (loss, logs)``: the step after the augmentation, free of host synchronisation;
  ``train.compile`` compiles it as one graph (``vssl.engine.trainer.compile_step``).
- ``param_groups(weight_decay) -> list[dict]``: the optimizer's groups (default: :func:`decay_groups`).
- ``after_optimizer_step(step)``: called after every optimizer step (an EMA teacher; the reliability
  tests inject their faults through it).
- ``needs_batch`` (default True): False makes the engine call ``training_step(None)``, and the method
  keeps training on its last batch (the repetition counter's tracking episodes).
- ``pad`` (class attribute, default ``"cycle"``): how a clip longer than its video is filled
  (:mod:`vssl.data.sampling`).
- ``training_set(videos, root, run, failure_log)`` (static): the dataset ``vssl pretrain/finetune``
  builds for the method instead of a ``ClipDataset``.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from torch import Tensor, nn


@runtime_checkable
class Method(Protocol):
    """The members every registered method has (see the module docstring for the optional ones)."""

    #: the network whose weights are exported as ``backbone.pt`` at the end of a run
    backbone: nn.Module

    def training_step(self, batch: dict[str, Any] | None) -> tuple[Tensor, dict[str, float | Tensor]]:
        """The loss of one batch and its scalar logs (floats or 0-dim tensors, read by the engine in one
        transfer). ``batch`` is on the device: ``video`` uint8 (B, C, T, H, W), ``label``, ``index``,
        ``frame_size``; the method applies its own batched augmentation (:mod:`vssl.data.transforms`)."""
        ...


def decays(name: str, param: Any, no_decay: Collection[str] = ()) -> bool:
    """Whether parameter ``name`` gets weight decay: not biases, not 1-D parameters (norm weights and
    the like), not the names in ``no_decay`` (e.g. VideoMAE's ``mask_token``). The rule of MAE/VideoMAE's
    fine-tuning and pretraining scripts (timm ``param_groups_weight_decay``)."""
    return not (param.ndim <= 1 or name.endswith(".bias") or name in no_decay)


def decay_groups(module: nn.Module, weight_decay: float, no_decay: Collection[str] = ()) -> list[dict]:
    """Two optimizer groups of ``module``'s trainable parameters by :func:`decays`: weight decay
    ``weight_decay``, then none. An empty group is left out; the order is fixed because a checkpoint's
    optimizer state follows it."""
    decay, rest = [], []
    for name, p in module.named_parameters():
        if p.requires_grad:
            (decay if decays(name, p, no_decay) else rest).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]
