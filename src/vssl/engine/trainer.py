"""The one training loop behind every pretraining and fine-tuning job.

``Trainer(cfg, method, dataset, out_dir).fit()`` handles device and mixed precision, DDP under
torchrun, the optimizer and its warm-up + cosine/step schedule, gradient accumulation and clipping,
JSONL/TensorBoard logs, a rich progress bar, and atomic checkpoints from which ``resume=True``
continues exactly (same data order, same RNG streams, same weights as an uninterrupted run).

Faults end a run with one line and never cost a good checkpoint: a NaN/Inf loss stops it (naming the
step and the last good checkpoint; with fp16's gradient scaler the step is skipped instead), weights
that turned non-finite are not saved, a damaged ``last.pt`` is passed over for an older copy on resume,
and a checkpoint write that fails for lack of space keeps the previous file while training goes on.

The method owns the loss (``training_step(batch) -> (loss, logs)``, logs as floats or 0-dim tensors,
read in one transfer per step or, with ``train.defer_logs``, per log step); the trainer owns everything else.
"""

from __future__ import annotations

import errno
import math
import sys
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, Subset

from vssl import distributed as D
from vssl.config import RunConfig, config_to_dict, save_config
from vssl.data.collate import collate_clips
from vssl.engine.checkpoint import (StopSignals, refuse_overwrite, remove_stale_temporaries, resume_candidates,
                                    rng_state, save_training_checkpoint, set_rng_state)
from vssl.engine.data_order import EpochBatchSampler, SeededItems
from vssl.engine.logs import MetricsLogger, StepProgress
from vssl.engine.optim import build_optimizer, build_scheduler, resolve_precision
from vssl.engine.scalars import read_scalars
from vssl.errors import CheckpointError, ConfigError, NumericalError
from vssl.methods.contract import Method
from vssl.serialization import atomic_save, load_checkpoint

# ------------------------------------------------------------------------------------------------
# The step: compiled, wrapped for DDP, batches moved to the device
# ------------------------------------------------------------------------------------------------

def compile_step(method: nn.Module, step: nn.Module, backend: str = "inductor") -> None:
    """``train.compile``: ``torch.compile(dynamic=False)`` (dynamic shapes crash conv3d), in place so that
    state-dict keys stay as they are. A method's ``forward_loss`` (the step after its augmentation,
    free of host syncs) is compiled as one graph; the augmentation stays eager, since its crop boxes
    and tubelets are drawn on the host and a whole-step graph would be recompiled for their values at
    every step. Without ``forward_loss`` the whole step module is compiled."""
    if hasattr(method, "forward_loss"):
        method.forward_loss = torch.compile(method.forward_loss, dynamic=False, backend=backend)
    else:
        step.compile(dynamic=False, backend=backend)


class _StepModule(nn.Module):
    """Makes ``training_step`` the ``forward`` so that DDP's forward hooks (gradient sync) run."""

    def __init__(self, method: nn.Module):
        super().__init__()
        self.method = method

    def forward(self, batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
        return self.method.training_step(batch)


def _changed_keys(old: dict, new: dict, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two config dicts, as ``key (old -> new)``."""
    out = []
    for k in sorted(set(old) | set(new)):
        a, b = old.get(k), new.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _changed_keys(a, b, f"{prefix}{k}.")
        elif a != b:
            out.append(f"{prefix}{k} ({a!r} -> {b!r})")
    return out


def _to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: _to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to_device(v, device) for v in batch)
    return batch


# ------------------------------------------------------------------------------------------------
# The loop
# ------------------------------------------------------------------------------------------------


class Trainer:
    """Train ``method`` on ``dataset``; write logs, checkpoints and weights under ``out_dir``.

    Args:
        cfg: the run config (``data`` batch/loader settings, ``optim``, ``schedule``, ``train``).
        method: an ``nn.Module`` that is a :class:`vssl.methods.Method` (``training_step(batch) -> (loss,
            logs)`` and a ``backbone``), with that contract's optional hooks.
        dataset: map-style dataset of dicts (``video``, ``label``, ``index``).
        out_dir: run directory.
        resume: continue from ``<out_dir>/checkpoints/last.pt`` if it exists.
        overwrite: start afresh even where an earlier run left checkpoints or final weights (they are
            replaced); without it such a start is refused (``CheckpointError``), so a forgotten
            ``--resume`` never deletes finished work.
    """

    def __init__(self, cfg: RunConfig, method: nn.Module, dataset: Dataset, out_dir: str | Path,
                 resume: bool = False, overwrite: bool = False):
        self.cfg, self.dataset, self.out, self.resume = cfg, dataset, Path(out_dir), resume
        self.overwrite = overwrite
        self.device = D.resolve_device(cfg.train.device)
        D.init_distributed(self.device)
        D.set_determinism(cfg.train.deterministic, self.device)
        if cfg.train.grad_accum < 1 or cfg.train.max_steps < 0 or cfg.data.batch_size < 1:
            raise ConfigError("train.grad_accum and data.batch_size must be >= 1, train.max_steps >= 0")
        if not isinstance(method, Method):
            raise TypeError(f"{type(method).__name__} is not a training method: it needs training_step(batch) and "
                            "a backbone (vssl.methods.Method)")
        self.method = method.to(self.device)
        if cfg.train.channels_last and self.device.type == "cuda":
            for p in self.method.parameters():  # 3-D conv kernels only; cuDNN prefers NDHWC
                if p.dim() == 5:
                    p.data = p.data.contiguous(memory_format=torch.channels_last_3d)
        self.amp_dtype = resolve_precision(cfg.train.precision, self.device)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype == torch.float16)
        self.optimizer = build_optimizer(cfg.optim, self.method, self.device)
        self.scheduler = build_scheduler(cfg.schedule, self.optimizer, cfg.train.max_steps, cfg.optim.lr)
        self.model: nn.Module = _StepModule(self.method)
        self.ddp: DistributedDataParallel | None = None
        if D.is_dist():
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.model = self.ddp = DistributedDataParallel(self.model, device_ids=ids)
        if cfg.train.compile:
            compile_step(self.method, self.model)
        self.step = self.epoch = self.batch_in_epoch = 0
        self.last_checkpoint: tuple[int, Path] | None = None  # (step, path) of the newest good checkpoint
        self.checkpoint_failures = 0  # writes that failed for lack of space (the run went on)
        self.skipped_steps = self.skipped_in_a_row = 0  # steps the fp16 gradient scaler skipped
        self.clips_per_step = cfg.data.batch_size * cfg.train.grad_accum * D.world_size()
        self.ckpt_dir = self.out / "checkpoints"

    # --- data --------------------------------------------------------------------------------
    def _loader(self) -> DataLoader:
        """This epoch's loader, starting after the batches already consumed in it."""
        d, seed = self.cfg.data, self.cfg.train.seed
        base = self.dataset.dataset if isinstance(self.dataset, Subset) else self.dataset
        if hasattr(base, "set_epoch"):  # datasets that sample clips from rng(seed, epoch, index)
            base.set_epoch(self.epoch)
        sampler = EpochBatchSampler(len(self.dataset), d.batch_size, seed, self.epoch, D.rank(),
                                      D.world_size(), start=self.batch_in_epoch)
        if sampler.batches_per_epoch == 0:
            raise ConfigError(f"data.batch_size: {d.batch_size} x {D.world_size()} processes is larger "
                              f"than the dataset ({len(self.dataset)} items)")
        # worker seeds come from this generator: a function of (seed, epoch, rank) only
        # (mod 2**63: a generator seed is a signed 64-bit integer; any train.seed < 2**32 fits after it)
        g = torch.Generator().manual_seed(((seed * 1_000_003 + self.epoch) * 1_000_003 + D.rank()) % 2**63)
        return DataLoader(SeededItems(self.dataset, seed, self.epoch), batch_sampler=sampler,
                          num_workers=d.num_workers, generator=g, collate_fn=collate_clips,
                          pin_memory=d.pin_memory and self.device.type == "cuda")

    def _batches(self):
        """Endless stream of batches; keeps ``epoch`` / ``batch_in_epoch`` up to date."""
        while True:
            for batch in self._loader():
                self.batch_in_epoch += 1
                yield batch
            self.epoch, self.batch_in_epoch = self.epoch + 1, 0

    # --- one optimizer step ------------------------------------------------------------------
    def _micro_step(self, batch: dict, sync: bool) -> dict[str, Any]:
        batch = _to_device(batch, self.device)
        # skip the gradient all-reduce on all but the last micro-batch of an accumulation
        with self.ddp.no_sync() if self.ddp is not None and not sync else nullcontext():
            with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32,
                                enabled=self.amp_dtype is not None):
                loss, logs = self.model(batch)
            logs = {"loss": loss.detach(), **logs}
            if not self.cfg.train.defer_logs:  # one transfer for all of the step's scalars
                logs = read_scalars([logs])[0]
                self._check_losses([(None, logs["loss"])])
            self.scaler.scale(loss / self.cfg.train.grad_accum).backward()
        return logs

    def _check_losses(self, losses: list[tuple[int | None, float]]) -> None:
        """Stop at the first non-finite (step, loss); step None = the step in progress. With a gradient
        scaler the bad step is skipped instead (see _optimizer_step). Under DDP every rank stops
        together (one decision for all ranks, or the others would wait in the next all-reduce)."""
        if self.scaler.is_enabled():
            return
        bad = next(((step, v) for step, v in losses if not math.isfinite(v)), None)
        if D.is_dist():
            flag = torch.tensor([float(bad is not None)], device=self.device)
            if D.all_reduce_sum(flag).item() > 0 and bad is None:
                raise NumericalError(self._stop_message("loss is not finite on another rank", losses[0][0]))
        if bad is not None:
            # fail loudly: a diverged run only wastes compute
            raise NumericalError(self._stop_message(f"loss is {bad[1]}", bad[0]))

    def _write_logs(self, pending: list[tuple[int, dict]], logger: MetricsLogger, progress: StepProgress) -> dict:
        """Read the pending steps' logs in one transfer and write them; with ``defer_logs`` their losses
        are checked here, and only the lines before a non-finite one are written. Returns the last logs."""
        records = read_scalars([r for _, r in pending])
        steps = [s for s, _ in pending]
        pending.clear()
        try:
            if self.cfg.train.defer_logs:
                self._check_losses([(s, r["loss"]) for s, r in zip(steps, records)])
        finally:
            for step, r in zip(steps, records):
                if not (math.isfinite(r["loss"]) or self.scaler.is_enabled()):
                    break
                logger.log(step, r, to_tensorboard=step % self.cfg.train.log_every == 0)
        progress.update(steps[-1], records[-1], print_line=steps[-1] % self.cfg.train.log_every == 0)
        return records[-1]

    def _optimizer_step(self) -> dict[str, Any]:
        logs = {"lr": self.optimizer.param_groups[0]["lr"]}
        if self.cfg.train.clip_grad > 0:
            self.scaler.unscale_(self.optimizer)
            params = [p for g in self.optimizer.param_groups for p in g["params"]]
            logs["grad_norm"] = nn.utils.clip_grad_norm_(params, self.cfg.train.clip_grad).detach()
        scale = self.scaler.get_scale() if self.scaler.is_enabled() else 0.0
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.scaler.is_enabled():  # the scale only drops when the scaler found inf/NaN and skipped
            skipped = self.scaler.get_scale() < scale
            self.skipped_steps += skipped
            self.skipped_in_a_row = self.skipped_in_a_row + 1 if skipped else 0
            logs["skipped"] = float(skipped)
            if self.skipped_in_a_row > self.cfg.train.max_skipped_steps:
                raise NumericalError(self._stop_message(
                    f"the gradient scaler skipped {self.skipped_in_a_row} steps in a row (non-finite loss or "
                    f"gradients at every scale down to {self.scaler.get_scale():.3g})"))
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        self.step += 1
        if hasattr(self.method, "after_optimizer_step"):
            self.method.after_optimizer_step(self.step)
        return logs

    # --- state -------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Everything a resumed run needs; RNG states of every rank (gathered to rank 0)."""
        rngs = [rng_state()]
        if D.is_dist():
            rngs = [None] * D.world_size()
            torch.distributed.all_gather_object(rngs, rng_state())
        return {"step": self.step, "epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch,
                "model": self.method.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(),
                "rng": rngs, "world_size": D.world_size(), "config": config_to_dict(self.cfg)}

    def load_state_dict(self, state: dict) -> None:
        missing, unexpected = self.method.load_state_dict(state["model"], strict=False)
        if missing or unexpected:
            raise CheckpointError(f"checkpoint does not match the method: missing {missing[:5]}, "
                                  f"unexpected {unexpected[:5]}")
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        rngs = state["rng"]
        set_rng_state(rngs[D.rank()] if len(rngs) == D.world_size() else rngs[0])
        self.step, self.epoch, self.batch_in_epoch = state["step"], state["epoch"], state["batch_in_epoch"]

    def _stop_message(self, what: str, step: int | None = None) -> str:
        """``what`` at optimizer step ``step`` (default: the one in progress, 1-based as in
        metrics.jsonl), and where the last good checkpoint is; one line."""
        if self.last_checkpoint is None:
            kept = "no checkpoint was written yet"
        else:
            kept = f"the last good checkpoint is {self.last_checkpoint[1]} (step {self.last_checkpoint[0]})"
        return (f"{what} at step {self.step + 1 if step is None else step} (epoch {self.epoch}); stopped, {kept}; "
                "lower optim.lr or enable train.clip_grad, then continue with --resume")

    def _checkpoint(self) -> None:
        state = self.state_dict()  # collective under DDP: every rank takes part
        bad = [k for k, v in state["model"].items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
        if bad:  # never replace the last good checkpoint by a diverged one
            raise NumericalError(self._stop_message(f"weights became non-finite ({', '.join(bad[:3])})", self.step))
        fatal = None
        if D.is_main():
            try:
                last = save_training_checkpoint(self.ckpt_dir, state, self.step, self.cfg.train.keep_checkpoints)
                self.last_checkpoint = (self.step, last)
            except OSError as e:
                fatal = self._checkpoint_failed(e)
        if D.is_dist():  # instead of a barrier: every rank learns whether rank 0 has to stop
            flag = D.all_reduce_sum(torch.tensor([float(fatal is not None)], device=self.device))
            fatal = fatal or (f"checkpoint at step {self.step} not written by rank 0 (its message says why)"
                              if flag.item() > 0 else None)
        if fatal:
            raise CheckpointError(fatal)

    def _checkpoint_failed(self, error: OSError) -> str | None:
        """A failed write left the previous checkpoint intact: warn and go on when the disk is full
        (returns None), else return the message the run stops with."""
        before = ("no earlier checkpoint exists" if self.last_checkpoint is None else
                  f"the previous one (step {self.last_checkpoint[0]}) is intact")
        what = f"checkpoint at step {self.step} not written to {self.ckpt_dir} ({error.strerror or error}); {before}"
        if error.errno not in (errno.ENOSPC, errno.EDQUOT):
            return what
        self.checkpoint_failures += 1
        print(f"vssl: warning: {what}; training goes on and the next checkpoint tries again", file=sys.stderr,
              flush=True)
        return None

    def _save_final(self) -> None:
        if not D.is_main():
            return
        backbone = {k: v.detach().cpu().clone() for k, v in self.method.backbone.state_dict().items()}
        method = {k: v.detach().cpu().clone() for k, v in self.method.state_dict().items()}
        try:
            atomic_save(backbone, self.out / "backbone.pt")
            atomic_save({"model": method, "step": self.step, "config": config_to_dict(self.cfg)},
                        self.out / "final.pt")
        except OSError as e:
            kept = ("no checkpoint was written" if self.last_checkpoint is None else
                    f"the last checkpoint (step {self.last_checkpoint[0]}) is intact")
            raise CheckpointError(f"final weights not written to {self.out} ({e.strerror or e}); {kept}; "
                                  "free some space and rerun with --resume") from None

    def _resume_state(self) -> dict | None:
        """The newest checkpoint that loads, or None when there is none; a damaged ``last.pt`` (or
        one that is not a checkpoint at all) is reported and an older numbered copy is used."""
        candidates = resume_candidates(self.ckpt_dir)
        errors = []
        for path in candidates:
            try:
                state = load_checkpoint(path, map_location="cpu")
                if not {"step", "model", "optimizer", "rng"} <= set(state):
                    raise CheckpointError(f"{path}: not a training checkpoint (keys {sorted(state)[:6]})")
            except CheckpointError as e:
                errors.append(str(e))
                if D.is_main():
                    print(f"vssl: warning: {e}; trying an older checkpoint", file=sys.stderr, flush=True)
                continue
            self.last_checkpoint = (int(state["step"]), path)
            return state
        if candidates:
            raise CheckpointError(f"no loadable checkpoint in {self.ckpt_dir} ({len(candidates)} tried; "
                                  f"newest: {errors[0]})")
        return None

    def _check_shared_out(self) -> None:
        """Under DDP, ``out_dir`` must be one folder every rank sees: a resume is refused otherwise (it
        would desynchronise the ranks), a fresh run warns that it could not be resumed."""
        missing = D.ranks_without(self.out, self.device)
        if not missing:
            return
        what = (f"{self.out} is not one folder shared by all ranks (ranks {missing} do not see rank 0's files "
                "there): --out must be on a file system every node mounts")
        if self.resume:
            raise CheckpointError(f"{what}; resuming from per-node folders would desynchronise the ranks")
        if D.is_main():
            print(f"vssl: warning: {what}; this run's checkpoints cannot be resumed", file=sys.stderr, flush=True)

    def _check_same_resume_step(self, state: dict | None) -> None:
        """Every rank resumes from the same step (or none starts from scratch while others resume)."""
        if not D.is_dist():
            return
        step = torch.tensor([-1 if state is None else int(state["step"])], device=self.device)
        steps = D.all_gather(step).tolist()
        if len(set(steps)) > 1:
            seen = ", ".join(f"rank {r}: {'none' if s < 0 else f'step {s}'}" for r, s in enumerate(steps))
            raise CheckpointError(f"the ranks found different checkpoints in {self.ckpt_dir} ({seen}); --out must "
                                  "be one folder every node shares")

    # --- main --------------------------------------------------------------------------------
    def fit(self) -> dict[str, Any]:
        """Train until ``train.max_steps`` optimizer steps; returns a summary dict."""
        cfg = self.cfg.train
        self._check_shared_out()
        if not self.overwrite:
            refuse_overwrite(self.out, self.resume)
        state = self._resume_state() if self.resume else None
        self._check_same_resume_step(state)
        if state is not None:
            if D.is_main():
                print(f"vssl: resuming from {self.last_checkpoint[1]} (step {state['step']})", flush=True)
            changed = _changed_keys(state.get("config", {}), config_to_dict(self.cfg))
            if changed and D.is_main():
                print(f"vssl: warning: resuming with a changed config: {', '.join(changed)}")
            self.load_state_dict(state)
        else:
            if self.resume and D.is_main():
                print(f"vssl: no checkpoint in {self.ckpt_dir}; starting from scratch")
            if D.is_main() and self.ckpt_dir.is_dir():  # an older run's files must not be resumed later
                for old in self.ckpt_dir.glob("*.pt"):
                    old.unlink()
            D.seed_everything(cfg.seed + D.rank())  # per-rank augmentation streams
        if D.is_main():
            save_config(self.cfg, self.out / "config.yaml")
            remove_stale_temporaries(self.ckpt_dir)
        logger = MetricsLogger(self.out, enabled=D.is_main(), tensorboard=cfg.tensorboard,
                               resume_step=self.step if self.resume else None)
        progress = StepProgress(cfg.max_steps, self.step, enabled=D.is_main() and cfg.progress)
        self.model.train()
        start, start_step, summary = time.perf_counter(), self.step, {}
        pending: list[tuple[int, dict]] = []  # (step, logs) not yet read from the device
        batches = self._batches()
        try:
            with progress, StopSignals(self.device) as stop:
                while self.step < cfg.max_steps:
                    t0, data_time, micro = time.perf_counter(), 0.0, []
                    for i in range(cfg.grad_accum):
                        t = time.perf_counter()
                        # a method that trains several steps on one batch (the repetition counter's
                        # tracking episodes) asks for the next one only when it is done with the last
                        batch = next(batches) if getattr(self.method, "needs_batch", True) else None
                        data_time += time.perf_counter() - t  # waiting for the loader: the input bottleneck
                        micro.append(self._micro_step(batch, sync=i == cfg.grad_accum - 1))
                    logs = {k: sum(m[k] for m in micro) / len(micro) for k in micro[0]}
                    logs.update(self._optimizer_step())
                    step_time = time.perf_counter() - t0
                    logs.update(epoch=self.epoch, step_time=step_time, data_time=data_time,
                                clips_per_s=self.clips_per_step / step_time)
                    pending.append((self.step, logs))
                    stopping = stop.should_stop()  # the same answer on every rank
                    checkpoint = stopping or (cfg.ckpt_every > 0 and self.step % cfg.ckpt_every == 0)
                    # defer_logs: the device's scalars are read at log steps and before checkpoints only
                    if not cfg.defer_logs or checkpoint or self.step % cfg.log_every == 0 or \
                            self.step == cfg.max_steps:
                        summary = self._write_logs(pending, logger, progress)
                    if checkpoint:
                        self._checkpoint()
                    if stopping:
                        saved = "nothing saved yet" if self.last_checkpoint is None else \
                            f"last checkpoint at step {self.last_checkpoint[0]}"
                        raise KeyboardInterrupt(f"stopped at step {self.step} ({saved}); continue with --resume")
            if cfg.ckpt_every > 0 and self.step > start_step and self.step % cfg.ckpt_every != 0:
                self._checkpoint()  # a finished run resumes as a no-op
            self._save_final()
        finally:
            logger.close()
        elapsed = time.perf_counter() - start
        return {"step": self.step, "steps_run": self.step - start_step, "epoch": self.epoch,
                "loss": summary.get("loss"), "time_s": elapsed,
                "steps_per_s": (self.step - start_step) / max(elapsed, 1e-9), "out": str(self.out),
                "checkpoint_failures": self.checkpoint_failures, "skipped_steps": self.skipped_steps,
                "last_checkpoint_step": None if self.last_checkpoint is None else self.last_checkpoint[0]}
