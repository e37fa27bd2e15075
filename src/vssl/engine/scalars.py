"""Logged scalars read from the device in one transfer.

A method's ``training_step`` returns its logs as floats or 0-dim tensors. Reading each tensor with
``.item()`` makes the host wait for the device once per scalar; :func:`read_scalars` stacks every
tensor of a batch of log records (one step's, or every step's since the last log step with
``train.defer_logs``) and copies them to the host at once.
"""

from __future__ import annotations

from typing import Any

import torch


def read_scalars(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Copies of ``records`` whose tensor values are Python floats (non-tensor values pass through).

    One device-to-host copy per device holding any of the tensors, in float64, so a float32 value
    reads exactly as its ``.item()`` would.
    """
    out = [dict(r) for r in records]
    slots: dict[torch.device, list[tuple[int, str]]] = {}
    for i, r in enumerate(records):
        for k, v in r.items():
            if isinstance(v, torch.Tensor):
                if v.numel() != 1:
                    raise ValueError(f"logged value {k!r} is a tensor of shape {tuple(v.shape)}, not a scalar")
                slots.setdefault(v.device, []).append((i, k))
    for keys in slots.values():
        values = torch.stack([records[i][k].detach().reshape(()).double() for i, k in keys]).tolist()
        for (i, k), value in zip(keys, values):
            out[i][k] = value
    return out
