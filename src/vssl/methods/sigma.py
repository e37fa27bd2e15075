"""SIGMA: Sinkhorn-Guided Masked Video Modeling (Salehi et al., ECCV 2024, arXiv 2407.15447;
``QUVA-Lab/SIGMA: modeling_pretrain.py``, ``engine_for_pretraining.py``, ``utils.py``).

VideoMAE (tube masking 0.9, encoder on visible tokens, narrow decoder) whose masked tokens are not
regressed onto pixels. Instead the decoder output z_P and a target feature z_T of the same tube are
scored against K = 3000 L2-normalised prototypes; Sinkhorn-Knopp turns each side's scores into
balanced assignments whose argmax is the *other* side's label (sigma-videomae.md §2.3-2.4)::

    s_T = norm(z_T) @ C^T,  s_P = norm(z_P) @ sg(C)^T
    L   = CE(s_T / 0.1, argmax Q_P) + CE(s_P / 0.1, argmax Q_T)

Targets: ``mlp`` (SIGMA-MLP) = a trainable MLP 1536-1024-1024-512-256 on the normalised pixel
tube; ``dino`` (SIGMA-DINO) = a frozen image ViT's patch features of the first frame of each
tubelet, z-scored per video and channel.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from vssl import distributed as D
from vssl.data import transforms as TF
from vssl.errors import ConfigError
from vssl.methods.masking import pixel_targets
from vssl.methods.videomae import VideoMAE
from vssl.models.vit import gather_rows, visible_indices

if TYPE_CHECKING:
    from vssl.config import RunConfig


SINKHORN_PRECISIONS = ("fp32", "bf16")


def _matvec(m: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``m @ x`` for an fp32 vector ``x``, returned in fp32. A bf16 ``m`` is read at half the bytes
    (the Sinkhorn loop is bound by reading its (N, K) matrix); the products accumulate in fp32 and
    CUDA writes them in fp32 (``mm(out_dtype=)``); the CPU rounds the result to bf16 first."""
    if m.dtype == torch.float32:
        return m @ x
    x = x.to(m.dtype)[:, None]
    if m.is_cuda:
        return torch.mm(m, x, out_dtype=torch.float32)[:, 0]
    return (m @ x)[:, 0].float()


def _sinkhorn_scaling(scores: torch.Tensor, eps: float, iters: int, distributed: bool | None,
                      precision: str = "fp32", tol: float = 0.0
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Sinkhorn-Knopp through scaling vectors: returns (K0, u, v, colmax) with Q = diag(u) K0 diag(v).

    ``K0 = exp((s - rowmax - colmax) / eps)`` is computed once in fp32, where ``colmax`` is the
    column max of ``s - rowmax`` (all-reduced with MAX under DDP): every entry is <= 1 and every row
    and every prototype holds an exact 1, so none underflows entirely at small eps. The column shift
    is absorbed by ``v`` (recomputed from scratch by each column step); the reference's start
    ``exp(s / eps)`` (up to the global max, all-reduced with MAX under DDP) is carried by the initial
    ``u = exp((rowmax - max) / eps)``, so the iterates are the reference's. Each iteration reads K0
    twice (``K0^T u`` and ``K0 v``) instead of ~14 passes of the log-domain form. The per-prototype
    sums ``K0^T u`` are all-reduced (SUM), so balancing is over the global batch; the global total
    of the reference cancels in the column step. Column sums are clamped at 1e-30 so that a
    prototype whose mass still underflows in fp32 (only in the first column step, from rows whose
    initial ``u`` underflowed) gets a large but finite scale.

    ``precision="bf16"`` stores K0 in bf16 for the iterations (u and v stay fp32, see ``_matvec``).
    ``tol > 0`` stops before ``iters`` once every prototype's mass is within ``tol`` (relative) of
    N/K after a row step; reading that error costs one host synchronisation per iteration.
    """
    if distributed is None:
        distributed = D.is_multiprocess()
    s = scores.detach().float()
    n, k = s.shape
    row_max = s.amax(dim=1, keepdim=True)
    g_max = row_max.amax().reshape(1) if n else torch.full((1,), -torch.inf, device=s.device)
    n_all: float | torch.Tensor = float(n)  # a host number: a tensor made from it would be a copy + sync
    if distributed:
        n_all = torch.tensor([n_all], device=s.device)
        D.all_reduce_max(g_max)
        D.all_reduce_sum(n_all)
    k0 = s - row_max  # the only (N, K) buffer (s may alias the caller's scores)
    col_max = k0.amax(dim=0) if n else torch.zeros(k, device=s.device)
    if distributed:
        D.all_reduce_max(col_max)
    k0.sub_(col_max).div_(eps).exp_()  # <= 1, with an exact 1 in every row and (globally) every column
    if precision == "bf16":
        k0 = k0.to(torch.bfloat16)
    u = ((row_max.squeeze(1) - g_max) / eps).exp()
    col_mass = n_all / k  # each prototype gets N_global / K
    v = torch.ones(k, device=s.device)
    for i in range(iters):
        col = _matvec(k0.t(), u)
        if distributed:
            D.all_reduce_sum(col)
        if tol > 0 and i > 0 and float((col * v / col_mass - 1).abs().amax()) <= tol:
            break  # the last row step left every prototype within tol of its mass: end on it
        v = col_mass / col.clamp_min(1e-30)
        u = 1.0 / _matvec(k0, v)  # each sample sums to 1 (K0 v >= the row's 1 * v_j > 0)
    return k0, u, v, col_max


@torch.no_grad()
def sinkhorn(scores: torch.Tensor, eps: float = 0.05, iters: int = 10, distributed: bool | None = None,
             precision: str = "fp32", tol: float = 0.0) -> torch.Tensor:
    """Sinkhorn-Knopp: balanced soft assignments of N samples to K prototypes.

    Alternately rescales ``exp(scores / eps)`` so that every prototype receives the same total mass
    (N/K, with N the number of samples over all processes) and every sample distributes a mass of 1,
    ending on the per-sample step (SwAV, Caron et al., NeurIPS 2020, ``facebookresearch/swav:
    main_swav.py distributed_sinkhorn``; SIGMA ``utils.py sinkhorn`` uses eps 0.05 on K400, 0.03 on
    SSv2, 10 iterations). Iterates on the row/column scaling vectors of ``exp((scores - max) / eps)``
    computed once in float32 (see ``_sinkhorn_scaling``): two reads of the (N, K) matrix per
    iteration; small ``eps`` cannot overflow (the reference exponentiates directly and overflows
    below eps ~ 0.012), and underflow is handled by a per-row shift.

    Args:
        scores: (N, K) similarities of this process's samples to the prototypes.
        eps: entropic regularisation (the temperature of ``exp(scores / eps)``).
        iters: number of (prototype, sample) normalisation rounds.
        distributed: balance over the global batch with ``torch.distributed`` all-reduces of the
            per-prototype sums; None = whenever a process group with > 1 process is initialised.
        precision: ``fp32`` (the reference's arithmetic) or ``bf16`` (the matrix the iterations
            read is stored in bf16: half the memory traffic; the scaling vectors stay fp32).
        tol: 0 = exactly ``iters`` rounds; > 0 = stop early once the prototype masses are within
            ``tol`` (relative) of N/K (one host synchronisation per round).

    Returns:
        Q (N, K) in fp32: every row sums to 1; every column sums to (global N)/K once converged.
    """
    k0, u, v, _ = _sinkhorn_scaling(scores, eps, iters, distributed, precision, tol)
    return k0.float().mul_(v).mul_(u[:, None])


@torch.no_grad()
def sinkhorn_labels(scores: torch.Tensor, eps: float = 0.05, iters: int = 10,
                    distributed: bool | None = None, precision: str = "fp32", tol: float = 0.0) -> torch.Tensor:
    """``sinkhorn(scores, eps, iters).argmax(dim=1)`` without building Q (u does not move a row's argmax).

    With ``precision="bf16"`` the argmax is taken on the fp32 scores, ``s - colmax + eps * log v``
    (the log of ``K0 v`` up to a per-row constant), so that rounding K0 to bf16 cannot tie a row's
    two best prototypes; only the scaling vector comes from the bf16 iterations.
    """
    s = scores.detach().float()
    k0, _, v, col_max = _sinkhorn_scaling(s, eps, iters, distributed, precision, tol)
    if k0.dtype == torch.float32:
        return k0.mul_(v).argmax(dim=1)
    del k0
    return (s + (eps * v.log() - col_max)).argmax(dim=1)


def swapped_prediction_loss(s_t: torch.Tensor, s_p: torch.Tensor, eps: float = 0.05, iters: int = 10,
                            temperature: float = 0.1, precision: str = "fp32", tol: float = 0.0
                            ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """SIGMA's loss: each side predicts the other side's hard Sinkhorn label.

    Args:
        s_t: (M, K) target-feature scores (gradient to the prototypes and, for SIGMA-MLP, the MLP).
        s_p: (M, K) prediction scores computed with detached prototypes (gradient to the video model).
        eps, iters, precision, tol: Sinkhorn settings (:func:`sinkhorn`); temperature: 0.1 (hard-coded
            in SIGMA).

    Returns:
        (loss, logs) with collapse detectors as 0-dim tensors (read by the engine in one transfer, so
        the step has no host synchronisation): ``usage_entropy`` (entropy of the target labels'
        histogram / log K; 1 = uniform usage), ``distinct_labels`` (fraction of the K prototypes
        used by the prediction labels, capped by M), ``agreement`` (y_T == y_P).
    """
    y_t = sinkhorn_labels(s_t, eps, iters, precision=precision, tol=tol)
    y_p = sinkhorn_labels(s_p, eps, iters, precision=precision, tol=tol)
    loss_t = F.cross_entropy(s_t / temperature, y_p)
    loss_p = F.cross_entropy(s_p / temperature, y_t)
    with torch.no_grad():
        k = s_t.shape[1]
        # scatter instead of bincount / unique: both read a size back to the host
        hist = torch.zeros(k, device=y_t.device).scatter_add_(0, y_t, torch.ones_like(y_t, dtype=torch.float32))
        prob = hist / hist.sum()
        entropy = -(prob * prob.clamp(min=1e-12).log()).sum() / math.log(k)
        used = torch.zeros(k, dtype=torch.bool, device=y_p.device).index_fill_(0, y_p, True)
        logs = {"loss_target": loss_t.detach(), "loss_pred": loss_p.detach(), "usage_entropy": entropy,
                "distinct_labels": used.sum() / min(k, y_p.numel()),
                "agreement": (y_t == y_p).float().mean()}
    return loss_t + loss_p, logs


def mlp_projector(dims: list[int]) -> nn.Sequential:
    """SIGMA-MLP target head: Linear-GELU-...-Linear over ``dims`` (1536-1024-1024-512-256 at ViT-B)."""
    layers: list[nn.Module] = []
    for i in range(len(dims) - 1):
        layers.append(nn.Linear(dims[i], dims[i + 1]))
        if i < len(dims) - 2:
            layers.append(nn.GELU())
    return nn.Sequential(*layers)


class SIGMA(VideoMAE):
    """VideoMAE with Sinkhorn-guided feature targets and a swapped hard-label loss."""

    @dataclass
    class Config(VideoMAE.Config):
        target: str = "mlp"  # mlp (SIGMA-MLP) | dino (SIGMA-DINO, frozen image teacher)
        num_prototypes: int = 3000  # K
        sinkhorn_eps: float = 0.05  # K400 scripts 0.05, SSv2 ViT-B 0.03
        sinkhorn_iters: int = 10
        # speed levers (issue 18; the defaults are the reference's arithmetic): bf16 = the Sinkhorn
        # iterations read a bf16 copy of their matrix; tol > 0 = stop once the prototype masses are
        # within tol of N/K (one host sync per iteration)
        sinkhorn_precision: str = "fp32"
        sinkhorn_tol: float = 0.0
        temperature: float = 0.1
        mlp_dims: list[int] = field(default_factory=lambda: [1024, 1024, 512, 256])  # after the pixel dim
        dino_model: str = "vit_base_patch16_224"  # a timm ViT name (DINO ViT-B/16 in the paper)
        dino_checkpoint: str = ""  # local weights (e.g. timm's vit_base_patch16_224.dino)
        # an empty dino_checkpoint means a randomly initialised teacher, which is not SIGMA-DINO: it is
        # refused unless this is set (the tiny CPU smoke recipes, which have no DINO weights at 32 px)
        random_teacher: bool = False

    num_clips = 1

    def __init__(self, cfg: Config, backbone: nn.Module, run: RunConfig):
        if cfg.target not in ("mlp", "dino"):
            raise ConfigError(f"method.target: expected mlp or dino, got {cfg.target!r}")
        if cfg.num_prototypes < 2 or cfg.sinkhorn_eps <= 0 or cfg.temperature <= 0 or not cfg.mlp_dims:
            raise ConfigError("method: num_prototypes must be >= 2, sinkhorn_eps and temperature > 0, "
                              "mlp_dims non-empty")
        if cfg.sinkhorn_precision not in SINKHORN_PRECISIONS or cfg.sinkhorn_tol < 0:
            raise ConfigError(f"method.sinkhorn_precision: expected one of {SINKHORN_PRECISIONS} (got "
                              f"{cfg.sinkhorn_precision!r}); method.sinkhorn_tol: >= 0 (got {cfg.sinkhorn_tol})")
        if cfg.target == "dino" and not cfg.dino_checkpoint and not cfg.random_teacher:
            raise ConfigError("method.dino_checkpoint: empty, so SIGMA-DINO would train against a randomly "
                              "initialised teacher; give the DINO image-model weights (or set "
                              "method.random_teacher: true for a smoke test)")
        teacher = self._build_teacher(cfg, backbone, run) if cfg.target == "dino" else None
        out_dim = teacher.num_features if teacher is not None else cfg.mlp_dims[-1]
        super().__init__(cfg, backbone, run, out_dim=out_dim)
        # the frozen teacher is kept outside the module tree: not in checkpoints (it is rebuilt from
        # dino_checkpoint), invisible to DDP and to module-wide casts such as channels_last_3d
        self._teacher = [teacher] if teacher is not None else []
        if teacher is None:
            self.projector = mlp_projector([self.pixel_dim, *cfg.mlp_dims])
        self.prototypes = nn.Parameter(F.normalize(torch.randn(cfg.num_prototypes, out_dim), dim=1))

    @staticmethod
    def _build_teacher(cfg: Config, backbone: nn.Module, run: RunConfig) -> nn.Module:
        """A frozen timm ViT whose patch grid matches the student's (same patch size and frame size)."""
        import timm

        teacher = timm.create_model(cfg.dino_model, pretrained=False, num_classes=0,
                                    img_size=run.data.crop_size, patch_size=backbone.patch_size)
        if cfg.dino_checkpoint:
            from pathlib import Path

            from timm.models.vision_transformer import checkpoint_filter_fn

            from vssl.errors import CheckpointError
            from vssl.serialization import load_checkpoint

            if not Path(cfg.dino_checkpoint).is_file():
                raise ConfigError(f"method.dino_checkpoint: file not found: {cfg.dino_checkpoint}")
            where = f"method.dino_checkpoint: {cfg.dino_checkpoint}"
            try:  # weights_only; a damaged or foreign file is one line, not a traceback
                state = load_checkpoint(cfg.dino_checkpoint)
            except CheckpointError as e:
                raise ConfigError(f"method.dino_checkpoint: {e}") from None
            # DINO's released backbone is a plain ViT state dict; its full training checkpoint keeps the
            # teacher under "teacher" with "backbone."/"head." prefixes (facebookresearch/dino main_dino.py)
            state = state.get("model", state.get("teacher", state))
            state = {k.removeprefix("module.").removeprefix("backbone."): v for k, v in state.items()
                     if isinstance(v, torch.Tensor)}
            try:
                missing, _ = teacher.load_state_dict(checkpoint_filter_fn(state, teacher), strict=False)
            except (RuntimeError, KeyError, ValueError) as e:  # shape mismatches: another ViT width
                raise ConfigError(f"{where}: does not fit {cfg.dino_model} "
                                  f"({str(e).strip().splitlines()[-1].strip()[:200]})") from None
            if missing:
                raise ConfigError(f"{where}: missing keys {missing[:5]}")
        teacher.eval().requires_grad_(False)
        return teacher

    @property
    def teacher(self) -> nn.Module | None:
        """The frozen image model of SIGMA-DINO (None for SIGMA-MLP), moved to the batch's device on use."""
        return self._teacher[0] if self._teacher else None

    @torch.no_grad()
    def teacher_targets(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised clips (B, C, T, H, W) -> (B, N, D) teacher patch features of the first frame of
        each tubelet (t, h, w order), z-scored per video and channel over the tokens (§2.2)."""
        teacher = self.teacher
        if next(teacher.parameters()).device != x.device:
            teacher.to(x.device)
        b, c = x.shape[:2]
        frames = x[:, :, ::self.backbone.tubelet_size]  # frames 0, 2, 4, ...
        t = frames.shape[2]
        with torch.autocast(x.device.type, enabled=False):
            feats = teacher.forward_features(frames.transpose(1, 2).reshape(b * t, c, *x.shape[-2:]).float())
        feats = feats[:, getattr(teacher, "num_prefix_tokens", 1):]  # drop CLS (and registers)
        feats = feats.reshape(b, -1, feats.shape[-1])
        return (feats - feats.mean(1, keepdim=True)) / (feats.std(1, keepdim=True) + 1e-6)

    def training_step(self, batch: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        x01 = self.augment(batch["video"], batch.get("frame_size"))
        return self.forward_loss(x01, self.make_mask(x01), self.masked_count(x01))

    def forward_loss(self, x01: torch.Tensor, mask: torch.Tensor, num_masked: int
                     ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Augmented clips in [0, 1] and their tube mask (``num_masked`` per sample) -> (loss, logs).

        No host synchronisation unless ``sinkhorn_tol`` > 0 (tokens are gathered by index, logs stay
        on the device), so ``torch.compile`` can take it as one graph."""
        cfg = self.cfg
        x = TF.normalize(x01)
        pred = self.predict(x, mask, num_masked).flatten(0, 1)  # (M, d): decoder outputs of the masked tubes
        masked = visible_indices(mask, num_masked)  # the masked tubes' indices, in token order
        if cfg.target == "dino":
            z_t = gather_rows(self.teacher_targets(x), masked).flatten(0, 1)
        else:
            pixels = pixel_targets(x01, self.backbone.tubelet_size, self.backbone.patch_size, cfg.normalize_target)
            z_t = self.projector(gather_rows(pixels, masked).flatten(0, 1))
        with torch.no_grad():  # prototypes live on the unit sphere (renormalised every step)
            self.prototypes.copy_(F.normalize(self.prototypes, dim=1))
        with torch.autocast(x.device.type, enabled=False):
            protos = self.prototypes.float()
            s_t = F.normalize(z_t.float(), dim=1) @ protos.t()
            s_p = F.normalize(pred.float(), dim=1) @ protos.detach().t()
            loss, logs = swapped_prediction_loss(s_t, s_p, cfg.sinkhorn_eps, cfg.sinkhorn_iters, cfg.temperature,
                                                 cfg.sinkhorn_precision, cfg.sinkhorn_tol)
        return loss, {"loss": loss.detach(), **logs}
