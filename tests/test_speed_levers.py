"""Issue 18's speed levers compute what the default path computes: SIGMA's Sinkhorn in bf16 and with an
early stop (against the plain SwAV formula in float64), the sync-free token gathering and logs (the
loss steps compile as one graph, equal to eager), the engine's deferred scalar reads (same
metrics.jsonl, same NaN stop, one read per log step) and the CUDA-graph key encoder (a no-op on CPU;
on CUDA the same keys as eager)."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
from test_engine import SHAPE, TinyMethod, tiny_cfg
from test_sigma import reference_sinkhorn

from vssl.config import RunConfig
from vssl.engine import Trainer
from vssl.engine import trainer as trainer_module
from vssl.engine.toy import RandomClipDataset
from vssl.engine.scalars import read_scalars
from vssl.errors import ConfigError, NumericalError
from vssl.methods import build_method
from vssl.methods.masking import gather_tokens, tube_mask
from vssl.methods.sigma import SIGMA, sinkhorn, sinkhorn_labels, swapped_prediction_loss
from vssl.methods.tubelet_contrast import TubeletContrast
from vssl.methods.videomae import VideoMAE
from vssl.models import build_backbone
from vssl.models.vit import gather_rows, visible_indices


def cosine_scores(n: int, k: int, dim: int = 64, seed: int = 0) -> torch.Tensor:
    """SIGMA's score matrix: L2-normalised features against L2-normalised prototypes."""
    g = torch.Generator().manual_seed(seed)
    z = F.normalize(torch.randn(n, dim, generator=g), dim=1)
    return z @ F.normalize(torch.randn(k, dim, generator=g), dim=1).t()


# --- Sinkhorn levers -----------------------------------------------------------------------------

@pytest.mark.parametrize("eps", [0.05, 0.03])
def test_bf16_sinkhorn_agrees_with_the_float64_reference(eps):
    scores = cosine_scores(4096, 300)
    ref = reference_sinkhorn(scores.double(), eps, 10)
    q = sinkhorn(scores, eps, 10, precision="bf16")
    assert q.dtype == torch.float32
    assert (q.double() - ref).abs().max() < 1e-2  # bf16 keeps ~3 digits of entries <= 1
    labels = sinkhorn_labels(scores, eps, 10, precision="bf16")
    assert (labels == ref.argmax(1)).float().mean() >= 0.995  # 0.999 measured; flips are near-ties
    fp32 = sinkhorn_labels(scores, eps, 10)
    assert (fp32 == ref.argmax(1)).float().mean() == 1.0


def test_early_stop_ends_on_the_first_row_step_within_tolerance():
    """``tol`` stops after the first round whose column masses are within tol of N/K: the result is
    exactly the fixed-iteration result at that round, and the round before was not yet within tol."""
    scores, eps, tol = cosine_scores(600, 30, seed=1), 0.05, 1e-3
    q = sinkhorn(scores, eps, 200, tol=tol)
    col_err = [((sinkhorn(scores, eps, j).sum(0) / 20 - 1).abs().max().item()) for j in range(1, 60)]
    stop = next(j for j, e in zip(range(1, 60), col_err) if e <= tol)
    assert 1 < stop < 60
    torch.testing.assert_close(q, sinkhorn(scores, eps, stop), rtol=0, atol=0)
    torch.testing.assert_close(q, reference_sinkhorn(scores.double(), eps, stop).float(), rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(q.sum(1), torch.ones(600))


def test_early_stop_labels_agree_with_ten_rounds():
    scores = cosine_scores(4096, 300, seed=2)
    ref = reference_sinkhorn(scores.double(), 0.05, 10).argmax(1)
    assert (sinkhorn_labels(scores, 0.05, 10, tol=1e-2) == ref).float().mean() >= 0.995


def test_sinkhorn_settings_are_validated():
    run = RunConfig()
    run.data.crop_size = 32
    for bad in (dict(sinkhorn_precision="fp16"), dict(sinkhorn_tol=-1.0)):
        with pytest.raises(ConfigError, match="method.sinkhorn_precision"):
            SIGMA(SIGMA.Config(decoder_dim=32, decoder_depth=1, decoder_heads=2, num_prototypes=16,
                               mlp_dims=[24], **bad), build_backbone("vit_tiny"), run)


# --- sync-free logs and token gathering -------------------------------------------------------------

def test_swapped_loss_logs_match_bincount_and_unique():
    torch.manual_seed(3)
    s_t, s_p = torch.randn(40, 6), torch.randn(40, 6)
    _, logs = swapped_prediction_loss(s_t, s_p, 0.05, 10)
    assert all(isinstance(v, torch.Tensor) and v.dim() == 0 for v in logs.values())
    y_t, y_p = sinkhorn(s_t, 0.05, 10).argmax(1), sinkhorn(s_p, 0.05, 10).argmax(1)
    prob = torch.bincount(y_t, minlength=6).double() / 40
    entropy = -sum(p * math.log(p) for p in prob.tolist() if p > 0) / math.log(6)
    assert logs["usage_entropy"].item() == pytest.approx(entropy, rel=1e-6)
    assert logs["distinct_labels"].item() == pytest.approx(y_p.unique().numel() / 6)
    assert logs["agreement"].item() == pytest.approx((y_t == y_p).double().mean().item())


def test_index_gather_equals_boolean_indexing():
    x = torch.randn(3, 16, 5)
    mask = tube_mask(3, (2, 2, 4), 0.75)
    n = int(mask[0].sum())
    torch.testing.assert_close(gather_rows(x, visible_indices(mask, n)), gather_tokens(x, mask), rtol=0, atol=0)
    torch.testing.assert_close(gather_rows(x, visible_indices(~mask, 16 - n)), gather_tokens(x, ~mask),
                               rtol=0, atol=0)


def _tiny(cls, **kw):
    run = RunConfig()
    run.data.crop_size = 32
    torch.manual_seed(0)
    return cls(cls.Config(decoder_dim=32, decoder_depth=1, decoder_heads=2, **kw), build_backbone("vit_tiny"), run)


@pytest.mark.slow
@pytest.mark.parametrize("cls, kw", [(VideoMAE, {}), (SIGMA, dict(num_prototypes=16, mlp_dims=[32, 24]))])
def test_loss_step_compiles_as_one_graph_and_matches_eager(cls, kw):
    """``fullgraph=True`` fails on any graph break, and ``.item()``, ``nonzero`` or boolean indexing
    break the graph: the masked-model loss (gathering, Sinkhorn, logs) runs without host syncs."""
    m = _tiny(cls, **kw)
    x01 = torch.rand(2, 3, 8, 32, 32, generator=torch.Generator().manual_seed(1))
    mask, n = m.make_mask(x01), m.masked_count(x01)
    loss, logs = m.forward_loss(x01, mask, n)
    loss.backward()
    grads = {k: p.grad.clone() for k, p in m.named_parameters() if p.grad is not None}
    m.zero_grad(set_to_none=True)
    loss_c, logs_c = torch.compile(m.forward_loss, fullgraph=True, backend="aot_eager")(x01, mask, n)
    loss_c.backward()
    torch.testing.assert_close(loss_c, loss)
    assert read_scalars([logs_c])[0] == pytest.approx(read_scalars([logs])[0])
    for k, g in grads.items():
        torch.testing.assert_close(dict(m.named_parameters())[k].grad, g, msg=k)


@pytest.mark.slow
def test_moco_loss_step_compiles_as_one_graph_and_matches_eager():
    """Tubelet contrast after its views: momentum update, both encoders, InfoNCE, enqueue."""
    m = _tubelet_contrast(False, "cpu")
    g = torch.Generator().manual_seed(3)
    q_clips, k_clips = torch.randn(4, 3, 8, 32, 32, generator=g), torch.randn(4, 3, 8, 32, 32, generator=g)
    state = {k: v.clone() for k, v in m.state_dict().items()}
    loss, logs = m.forward_loss(q_clips, k_clips)
    after = {k: v.clone() for k, v in m.state_dict().items()}
    m.load_state_dict(state)
    loss_c, logs_c = torch.compile(m.forward_loss, fullgraph=True, backend="aot_eager")(q_clips, k_clips)
    torch.testing.assert_close(loss_c, loss)
    assert read_scalars([logs_c])[0] == pytest.approx(read_scalars([logs])[0])
    for k, v in m.state_dict().items():  # the momentum update, the queue and its pointer, BN statistics
        torch.testing.assert_close(v, after[k], msg=k)


def test_engine_compile_takes_the_loss_step_and_leaves_the_augmentation_eager():
    from vssl.engine.trainer import _StepModule, compile_step

    m = _tiny(VideoMAE)
    video = torch.randint(0, 256, (2, 3, 8, 40, 40), dtype=torch.uint8, generator=torch.Generator().manual_seed(4))
    torch.manual_seed(5)
    loss, _ = m.training_step({"video": video})
    step = _StepModule(m)
    compile_step(m, step, backend="aot_eager")
    assert "forward_loss" in vars(m) and getattr(step, "_compiled_call_impl", None) is None  # the step stays eager
    torch.manual_seed(5)
    loss_c, _ = step({"video": video})
    torch.testing.assert_close(loss_c, loss)
    assert all("forward_loss" not in k for k in m.state_dict())


def test_sigma_step_equals_the_boolean_mask_path():
    """SIGMA's targets gathered by index give the loss of the old path (``gather_tokens``, count read
    from the mask) on the same clips and mask."""
    m = _tiny(SIGMA, num_prototypes=16, mlp_dims=[32, 24])
    x01 = torch.rand(2, 3, 8, 32, 32, generator=torch.Generator().manual_seed(2))
    mask = m.make_mask(x01)
    loss, _ = m.forward_loss(x01, mask, m.masked_count(x01))
    from vssl.data import transforms as TF
    from vssl.methods.masking import pixel_targets

    pred = m.predict(TF.normalize(x01), mask).flatten(0, 1)
    pixels = pixel_targets(x01, m.backbone.tubelet_size, m.backbone.patch_size)
    z_t = m.projector(gather_tokens(pixels, mask).flatten(0, 1))
    protos = m.prototypes.float()
    old, _ = swapped_prediction_loss(F.normalize(z_t, dim=1) @ protos.t(), F.normalize(pred, dim=1) @ protos.t())
    torch.testing.assert_close(loss, old)


# --- the engine's scalar reads --------------------------------------------------------------------------

def test_read_scalars_is_item_in_one_transfer():
    t = torch.tensor(0.1, dtype=torch.float32)
    out = read_scalars([{"a": t, "b": 2.5, "epoch": 3}, {"a": torch.tensor(7, dtype=torch.long)}])
    assert out == [{"a": t.item(), "b": 2.5, "epoch": 3}, {"a": 7.0}]
    with pytest.raises(ValueError, match="'v' is a tensor of shape \\(2,\\)"):
        read_scalars([{"v": torch.zeros(2)}])


def test_supervised_step_logs_tensors_without_a_host_sync(monkeypatch):
    """Fine-tuning's step leaves its scalars on the device (an ``.item()`` each would wait for the GPU at every
    step); the engine's one read gives the cross-entropy and accuracy of the logits the step computed."""
    cfg = RunConfig()
    cfg.method.name, cfg.method.params = "supervised", {"num_classes": 3}
    cfg.data.crop_size = 32
    method = build_method(cfg, build_backbone("r2plus1d_tiny"))
    seen = []
    forward = method.forward
    monkeypatch.setattr(method, "forward", lambda x: seen.append(forward(x)) or seen[-1])
    label = torch.tensor([0, 1, 2, 1])
    batch = {"video": torch.randint(0, 256, (4, 3, 4, 40, 40), dtype=torch.uint8), "label": label}

    def no_sync(self):
        raise AssertionError("the step read a scalar from the device")

    with monkeypatch.context() as m:
        m.setattr(torch.Tensor, "item", no_sync)
        loss, logs = method.training_step(batch)
    assert all(isinstance(v, torch.Tensor) and v.ndim == 0 for v in logs.values())
    (row,) = read_scalars([logs])
    (logits,) = seen
    assert row["loss"] == pytest.approx(F.cross_entropy(logits, label).item(), rel=1e-6) == loss.item()
    assert row["acc"] == (logits.argmax(1) == label).float().mean().item()


class TensorLogMethod(TinyMethod):
    """TinyMethod with its accuracy logged as a 0-dim tensor, as vssl's methods do."""

    def training_step(self, batch):
        loss, logs = super().training_step(batch)
        return loss, {"acc": torch.tensor(logs["acc"])}


def _metrics(path):
    drop = {"step_time", "data_time", "clips_per_s"}
    return [{k: v for k, v in json.loads(ln).items() if k not in drop} for ln in path.read_text().splitlines()]


def test_deferred_logs_write_the_same_lines_reading_once_per_log_step(tmp_path, monkeypatch):
    data = RandomClipDataset(32, 3, SHAPE, seed=0)
    reads = []
    real = trainer_module.read_scalars
    monkeypatch.setattr(trainer_module, "read_scalars", lambda records: reads.append(len(records)) or real(records))
    runs = {}
    for defer in (False, True):
        reads.clear()
        cfg = tiny_cfg(max_steps=8, log_every=3, defer_logs=defer, clip_grad=1.0)
        Trainer(cfg, TensorLogMethod(), data, tmp_path / str(defer)).fit()
        runs[defer] = (_metrics(tmp_path / str(defer) / "metrics.jsonl"), list(reads))
    assert runs[True][0] == runs[False][0] and [r["step"] for r in runs[True][0]] == list(range(1, 9))
    assert all(isinstance(r["acc"], float) and isinstance(r["grad_norm"], float) for r in runs[True][0])
    assert runs[False][1] == [1, 1] * 8  # the micro-step's scalars, then the step's (grad norm)
    assert runs[True][1] == [3, 3, 2]  # steps 1-3, 4-6, 7-8 (the last step)


def test_deferred_logs_stop_at_the_bad_step_with_the_same_message(tmp_path):
    from benchmarks.reliability_cases import TinyMethod as FaultyMethod
    from benchmarks.reliability_cases import tiny_data, tiny_run_config

    cfg = tiny_run_config(max_steps=12, ckpt_every=6)
    cfg.train.defer_logs, cfg.train.log_every = True, 4
    with pytest.raises(NumericalError) as err:
        Trainer(cfg, FaultyMethod((5,), math.nan), tiny_data(), tmp_path).fit()
    text = str(err.value)
    assert "loss is nan at step 5 " in text and "no checkpoint was written yet" in text  # read at step 6
    assert [r["step"] for r in _metrics(tmp_path / "metrics.jsonl")] == [1, 2, 3, 4]


# --- CUDA graphs for the key encoder ---------------------------------------------------------------------

def _tubelet_contrast(graphs: bool, device: str) -> TubeletContrast:
    run = RunConfig()
    run.data.crop_size = 32
    torch.manual_seed(0)
    cfg = TubeletContrast.Config(queue_size=32, bn="none", cuda_graph_keys=graphs)
    return TubeletContrast(cfg, build_backbone("r2plus1d_tiny"), run).to(device)


def _three_steps(graphs: bool, device: str) -> tuple[list[torch.Tensor], dict]:
    m = _tubelet_contrast(graphs, device)
    opt = torch.optim.SGD(m.parameters(), lr=0.5)
    keys = []
    for step in range(3):
        torch.manual_seed(10 + step)
        video = torch.randint(0, 256, (4, 3, 8, 40, 40), dtype=torch.uint8, device=device)
        loss, _ = m.training_step({"video": video})
        keys.append(m.queue[4 * step:4 * step + 4].clone())  # this step's keys, enqueued
        loss.backward()
        opt.step()
        opt.zero_grad()
    return keys, {k: v.detach().cpu() for k, v in m.key_backbone.state_dict().items()}


def test_cuda_graph_keys_is_a_no_op_on_cpu():
    (k_off, s_off), (k_on, s_on) = _three_steps(False, "cpu"), _three_steps(True, "cpu")
    assert all(torch.equal(a, b) for a, b in zip(k_off, k_on)) and all(torch.equal(s_off[k], s_on[k]) for k in s_off)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU (benchmarks/gpu_check.sh runs this)")
def test_cuda_graph_keys_equal_eager_keys_across_momentum_updates():
    with torch.backends.cudnn.flags(enabled=True, benchmark=False, deterministic=True):
        (k_off, s_off), (k_on, s_on) = _three_steps(False, "cuda"), _three_steps(True, "cuda")
    for a, b in zip(k_off, k_on):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5)
    for k in s_off:  # BN statistics: the warm-up before the capture left no trace
        torch.testing.assert_close(s_on[k], s_off[k], rtol=1e-4, atol=1e-5, msg=k)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="bf16 Sinkhorn's fp32-output matvec is CUDA's")
def test_bf16_sinkhorn_on_cuda_agrees_with_the_float64_reference():
    scores = cosine_scores(4096, 300).cuda()
    ref = reference_sinkhorn(scores.double().cpu(), 0.05, 10).argmax(1)
    labels = sinkhorn_labels(scores, 0.05, 10, precision="bf16").cpu()
    assert (labels == ref).float().mean() >= 0.995
