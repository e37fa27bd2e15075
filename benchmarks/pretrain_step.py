"""Pretraining step throughput and peak memory: vssl's methods against baselines measured in the same run.

A step is what the engine does per batch: forward under the engine's autocast policy
(``vssl.engine.optim.resolve_precision``: bf16 on CUDA, fp32 on CPU), backward, AdamW step (fused
on CUDA, via ``build_optimizer``), ``zero_grad``, the method's ``after_optimizer_step`` hook. The
batch is a uint8 clip already on the device; each method does its own batched augmentation.

Cases:
- ``videomae``: vssl VideoMAE (tube masking 0.9, SDPA, visible-only encoder, narrow decoder).
- ``sigma``: vssl SIGMA with the MLP target (SIGMA-MLP).
- ``ref_videomae``: the public VideoMAE code's step re-written here (``MCG-NJU/VideoMAE``
  ``modeling_pretrain.py`` + ``engine_for_pretraining.py``): explicit softmax attention, tokens and
  targets gathered with boolean indexing, fp16 autocast + GradScaler on CUDA (fp32 on CPU), plain
  AdamW. Same shapes as ``videomae``. It gets its float, normalised input and its masks ready-made
  (the public code builds them in loader workers), so the comparison favours the baseline.
- ``tubelet_contrast``: vssl Tubelet-Contrast (MoCo, two views with shared tubelets) on R(2+1)D;
  also reports the fraction of the step spent in tubelet synthesis (timed separately, synchronised).
- ``bare_r2plus1d``: the same CNN, one view, forward + backward + AdamW, no augmentation, no key
  encoder: the ceiling the tubelet-contrast step is compared with.

Sizes: ``full`` (GPU: ViT-B 16x224x224 batch 64; R(2+1)D-18 16x112x112 batch 32), ``--tiny``
(CPU: 4-block ViT dim 192 at 16x112x112 batch 4; r2plus1d_tiny 16x64x64 batch 4), ``--smoke``
(tests: vit_tiny / r2plus1d_tiny at 8x32x32 batch 2).

Usage:
    python benchmarks/pretrain_step.py --tiny                       # CPU, about a minute
    python benchmarks/pretrain_step.py --device cuda --steps 20     # full sizes on a GPU
    python benchmarks/pretrain_step.py --device cuda --compile      # torch.compile(dynamic=False)
"""

from __future__ import annotations

import argparse
import gc
import math
import time

import torch
import torch.nn.functional as F
from torch import nn

try:
    from benchmarks.common import (PeakMemory, gib, hardware, markdown_table, median, sync, time_calls,
                                   use_cpu_time, write_json)
except ImportError:  # run as a script
    from common import (PeakMemory, gib, hardware, markdown_table, median, sync, time_calls, use_cpu_time,
                        write_json)

from vssl.config import OptimConfig, RunConfig
from vssl.engine.scalars import read_scalars
from vssl.engine.optim import build_optimizer, resolve_precision
from vssl.engine.trainer import compile_step
from vssl.methods import METHODS
from vssl.models import build_backbone
from vssl.models.vit import sinusoid_table

SIZES = {
    # vit: backbone kwargs; dec: decoder (dim, depth, heads); clip: (T, H, W) decoded; crop: network size
    "full": dict(vit=dict(name="vit_b"), dec=(384, 4, 6), vit_clip=(16, 256, 320), vit_crop=224, vit_batch=64,
                 cnn="r2plus1d_18", cnn_clip=(16, 128, 170), cnn_crop=112, cnn_batch=32, queue=16384,
                 protos=3000, mlp=[1024, 1024, 512, 256]),
    "tiny": dict(vit=dict(name="vit_b", embed_dim=192, depth=4, num_heads=3), dec=(96, 2, 3),
                 vit_clip=(16, 128, 160), vit_crop=112, vit_batch=4,
                 cnn="r2plus1d_tiny", cnn_clip=(16, 80, 106), cnn_crop=64, cnn_batch=4, queue=4096,
                 protos=512, mlp=[256, 256, 128]),
    "smoke": dict(vit=dict(name="vit_tiny"), dec=(48, 1, 3), vit_clip=(8, 40, 48), vit_crop=32, vit_batch=2,
                  cnn="r2plus1d_tiny", cnn_clip=(8, 40, 48), cnn_crop=32, cnn_batch=2, queue=256,
                  protos=64, mlp=[64, 32]),
}
CASES = ("videomae", "sigma", "ref_videomae", "tubelet_contrast", "bare_r2plus1d")
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


# --- the public VideoMAE step, re-written as the baseline -----------------------------------------

class RefAttention(nn.Module):
    """``modeling_finetune.Attention``: explicit ``softmax(q k^T * scale) v``, no fused kernel."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.num_heads, self.scale = heads, (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=False)
        self.q_bias, self.v_bias = nn.Parameter(torch.zeros(dim)), nn.Parameter(torch.zeros(dim))
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        B, N, C = x.shape
        qkv_bias = torch.cat((self.q_bias, torch.zeros_like(self.v_bias, requires_grad=False), self.v_bias))
        qkv = F.linear(x, self.qkv.weight, qkv_bias).reshape(B, N, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = ((q * self.scale) @ k.transpose(-2, -1)).softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(B, N, -1))


class RefBlock(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim, eps=1e-6), nn.LayerNorm(dim, eps=1e-6)
        self.attn = RefAttention(dim, heads)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class RefVideoMAE(nn.Module):
    """``PretrainVisionTransformer``: encoder on ``x[~mask]``, decoder on [visible + pos, mask_token + pos]."""

    def __init__(self, dim, depth, heads, dec_dim, dec_depth, dec_heads, patch, tubelet, num_tokens):
        super().__init__()
        self.patch_embed = nn.Conv3d(3, dim, (tubelet, patch, patch), (tubelet, patch, patch))
        self.register_buffer("pos_embed", sinusoid_table(num_tokens, dim)[None], persistent=False)
        self.blocks = nn.ModuleList([RefBlock(dim, heads) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.encoder_to_decoder = nn.Linear(dim, dec_dim, bias=False)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dec_dim))
        self.register_buffer("dec_pos", sinusoid_table(num_tokens, dec_dim)[None], persistent=False)
        self.dec_blocks = nn.ModuleList([RefBlock(dec_dim, dec_heads) for _ in range(dec_depth)])
        self.dec_norm = nn.LayerNorm(dec_dim, eps=1e-6)
        self.head = nn.Linear(dec_dim, 3 * tubelet * patch * patch)

    def forward(self, x, mask):
        x = self.patch_embed(x).flatten(2).transpose(1, 2)
        x = x + self.pos_embed.type_as(x).to(x.device).clone().detach()
        B, _, C = x.shape
        x = x[~mask].reshape(B, -1, C)
        for blk in self.blocks:
            x = blk(x)
        x = self.encoder_to_decoder(self.norm(x))
        B, N, C = x.shape
        pos = self.dec_pos.expand(B, -1, -1).type_as(x).to(x.device).clone().detach()
        pos_vis, pos_mask = pos[~mask].reshape(B, -1, C), pos[mask].reshape(B, -1, C)
        x = torch.cat([x + pos_vis, self.mask_token + pos_mask], dim=1)
        for blk in self.dec_blocks:
            x = blk(x)
        return self.head(self.dec_norm(x[:, -pos_mask.shape[1]:]))


def ref_targets(videos, mask, tubelet, patch):
    """``engine_for_pretraining.train_one_epoch``: un-normalise, per-tube per-channel normalise, gather."""
    mean = torch.as_tensor(IMAGENET_MEAN, device=videos.device)[None, :, None, None, None]
    std = torch.as_tensor(IMAGENET_STD, device=videos.device)[None, :, None, None, None]
    v = videos * std + mean
    b, c, t, h, w = v.shape
    v = v.reshape(b, c, t // tubelet, tubelet, h // patch, patch, w // patch, patch)
    v = v.permute(0, 2, 4, 6, 3, 5, 7, 1).reshape(b, -1, tubelet * patch * patch, c)  # b (t h w) (p0 p1 p2) c
    v = (v - v.mean(dim=-2, keepdim=True)) / (v.var(dim=-2, unbiased=True, keepdim=True).sqrt() + 1e-6)
    v = v.flatten(2)
    return v[mask].reshape(b, -1, v.shape[-1])


# --- case builders: each returns (step function, info dict) ---------------------------------------

def _run_config(crop: int) -> RunConfig:
    run = RunConfig()
    run.data.crop_size = crop
    return run


def _prepare(module: nn.Module, device: torch.device) -> nn.Module:
    module.to(device)
    if device.type == "cuda":  # the trainer's channels_last policy: 3-D conv kernels in NDHWC
        for p in module.parameters():
            if p.dim() == 5:
                p.data = p.data.contiguous(memory_format=torch.channels_last_3d)
    return module


class _Step(nn.Module):
    def __init__(self, method):
        super().__init__()
        self.method = method

    def forward(self, batch):
        return self.method.training_step(batch)


LOG_EVERY = 10  # the engine's default train.log_every: how often deferred scalars are read
COMPILE_BACKEND = "inductor"  # torch.compile's; "eager" (tracing only) keeps CPU smoke runs short


def method_step(name: str, size: dict, device, amp, compile_: bool, params: dict | None = None,
                defer_logs: bool = False):
    """A vssl method's step as the engine runs it, including the engine's scalar reads: the step's
    loss and logs in one transfer before backward, or every ``LOG_EVERY`` steps with ``defer_logs``.
    ``params``: method settings over the size's (the levers, e.g. ``sinkhorn_precision``)."""
    vit = name in ("videomae", "sigma")
    if vit:
        kw = dict(size["vit"])
        backbone = build_backbone(kw.pop("name"), **kw)
        d, depth, heads = size["dec"]
        defaults = dict(decoder_dim=d, decoder_depth=depth, decoder_heads=heads)
        if name == "sigma":
            defaults.update(target="mlp", num_prototypes=size["protos"], mlp_dims=size["mlp"])
        clip, crop, batch = size["vit_clip"], size["vit_crop"], size["vit_batch"]
    else:
        backbone = build_backbone(size["cnn"])
        defaults = dict(queue_size=size["queue"])
        clip, crop, batch = size["cnn_clip"], size["cnn_crop"], size["cnn_batch"]
    cls = METHODS[name]
    method = _prepare(cls(cls.Config(**{**defaults, **(params or {})}), backbone, _run_config(crop)), device)
    method.train()
    optimizer = build_optimizer(OptimConfig(lr=1e-4), method, device)
    scaler = torch.amp.GradScaler(device.type, enabled=amp == torch.float16)
    model = _Step(method)
    if compile_:  # as the engine's train.compile
        compile_step(method, model, COMPILE_BACKEND)
    video = torch.randint(0, 256, (batch, 3, *clip), dtype=torch.uint8, device=device)
    data = {"video": video, "label": torch.zeros(batch, dtype=torch.long, device=device),
            "index": torch.arange(batch, device=device)}
    counter, pending = [0], []

    def step():
        with torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
            loss, logs = model(data)
        pending.append({"loss": loss.detach(), **logs})
        if not defer_logs or len(pending) == LOG_EVERY:
            read_scalars(pending)
            pending.clear()
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        counter[0] += 1
        if hasattr(method, "after_optimizer_step"):
            method.after_optimizer_step(counter[0])

    return step, dict(method=method, batch=batch, video=video,
                      shape=f"{batch}x3x{clip[0]}x{crop}x{crop} (from {clip[1]}x{clip[2]})")


def ref_videomae_step(size: dict, device, amp, compile_: bool):
    kw = dict(size["vit"])
    probe = build_backbone(kw.pop("name"), **kw)  # read the shape off the vssl backbone of the same name
    dim, depth, heads = probe.embed_dim, probe.depth, probe.num_heads
    patch, tubelet = probe.patch_size, probe.tubelet_size
    del probe
    t, crop, batch = size["vit_clip"][0], size["vit_crop"], size["vit_batch"]
    grid = (t // tubelet, crop // patch, crop // patch)
    n = math.prod(grid)
    d, ddepth, dheads = size["dec"]
    model = _prepare(RefVideoMAE(dim, depth, heads, d, ddepth, dheads, patch, tubelet, n), device).train()
    fwd = torch.compile(model, dynamic=False, backend=COMPILE_BACKEND) if compile_ else model
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.05)  # timm create_optimizer
    ref_amp = torch.float16 if device.type == "cuda" else None  # torch.cuda.amp.autocast() = fp16
    scaler = torch.amp.GradScaler(device.type, enabled=ref_amp == torch.float16)
    videos = torch.randn(batch, 3, t, crop, crop, device=device)  # normalised float clips from the loader
    num_masked = int(0.9 * grid[1] * grid[2])
    masks = []
    for _ in range(4):  # TubeMaskingGenerator: per sample, numpy, in loader workers (precomputed here)
        m = torch.zeros(batch, grid[1] * grid[2], dtype=torch.bool)
        for i in range(batch):
            m[i, torch.randperm(grid[1] * grid[2])[:num_masked]] = True
        masks.append(m.repeat(1, grid[0]).to(device))
    counter = [0]

    def step():
        mask = masks[counter[0] % len(masks)]
        counter[0] += 1
        with torch.no_grad():
            labels = ref_targets(videos, mask, tubelet, patch)
        with torch.autocast(device.type, dtype=ref_amp or torch.float32, enabled=ref_amp is not None):
            outputs = fwd(videos, mask)
            loss = F.mse_loss(outputs, labels)
        loss.item()  # the public loop reads the loss every step (is-finite check)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad()

    return step, dict(batch=batch, shape=f"{batch}x3x{t}x{crop}x{crop} (float input)", precision=str(ref_amp))


def bare_cnn_step(size: dict, device, amp, compile_: bool):
    model = _prepare(build_backbone(size["cnn"]), device).train()
    fwd = torch.compile(model, dynamic=False, backend=COMPILE_BACKEND) if compile_ else model
    optimizer = build_optimizer(OptimConfig(lr=1e-4), model, device)
    t, crop, batch = size["cnn_clip"][0], size["cnn_crop"], size["cnn_batch"]
    x = torch.randn(batch, 3, t, crop, crop, device=device)
    if device.type == "cuda":
        x = x.contiguous(memory_format=torch.channels_last_3d)

    def step():
        with torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
            loss = fwd(x).float().pow(2).mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step, dict(batch=batch, shape=f"{batch}x3x{t}x{crop}x{crop}")


def synthesis_fraction(info: dict, step_s: float, steps: int, device) -> dict:
    """Time the tubelet view building and the synthesizer alone (synchronised) against the step."""
    method, video = info["method"], info["video"]
    from vssl.data import transforms as TF

    x = TF.random_resized_crop(video.float() / 255, method.size, (0.45, 0.75), (3 / 4, 4 / 3))
    synth = median(time_calls(lambda: method.synthesize(x), steps, 1, device))
    views = median(time_calls(lambda: method.make_views(video), steps, 1, device))
    return {"synth_ms": synth * 1e3, "views_ms": views * 1e3,
            "synth_frac": synth / step_s, "views_frac": views / step_s}


def build_case(name: str, size: dict, device, amp, warmup: int, compile_: bool, base: str | None = None,
               **levers) -> dict:
    """Build a case and run its warm-up steps, measuring its peak memory (from before it was built).
    ``base``: the case it varies (``name`` is then a label such as ``sigma:sinkhorn_bf16``);
    ``levers``: ``method_step``'s ``params`` / ``defer_logs``."""
    base = base or name
    before = PeakMemory.current(device)
    t0 = time.perf_counter()
    with PeakMemory(device, base=before) as mem:
        if base == "ref_videomae":
            step, info = ref_videomae_step(size, device, amp, compile_)
        elif base == "bare_r2plus1d":
            step, info = bare_cnn_step(size, device, amp, compile_)
        else:
            step, info = method_step(base, size, device, amp, compile_, **levers)
        for _ in range(max(warmup, 1)):
            step()
        sync(device)
    persistent = PeakMemory.current(device) - before  # parameters, buffers, optimizer state
    return {"name": name, "base": base, "step": step, "info": info, "peak": mem.peak, "peak_kind": mem.label,
            "persistent": persistent, "setup_s": time.perf_counter() - t0, "times": []}


def time_interleaved(cases: list[dict], steps: int, device) -> None:
    """One timed step of each case per round, so that load changes on a shared machine hit every case
    alike and the ratios stay meaningful. On CUDA the peak memory of a case is re-measured over its
    timed steps (its persistent state + the step's peak above what was allocated before it), which
    leaves out the cuDNN autotuning workspaces of the warm-up and the other cases' state."""
    cuda = torch.device(device).type == "cuda"
    if cuda:
        for c in cases:
            c["peak"] = 0
    for _ in range(steps):
        for c in cases:
            if cuda:
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
                start = torch.cuda.memory_allocated()
            c["times"].extend(time_calls(c["step"], 1, 0, device))
            if cuda:
                c["peak"] = max(c["peak"], torch.cuda.max_memory_allocated() - start + c["persistent"])


def profile_cases(cases: list[dict], device, steps: int = 3, rows: int = 12) -> dict[str, str]:
    """Print torch.profiler's top ops of a few steps of each case (what bounds a missed target);
    returns the tables by case name."""
    from torch.autograd.profiler_util import FunctionEventAvg
    from torch.profiler import ProfilerActivity, profile

    cuda = torch.device(device).type == "cuda"
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    # torch >= 2.4 names it self_device_time_total (an instance attribute); older ones self_cuda_time_total
    device_key = "self_device_time_total" if "self_device_time_total" in vars(FunctionEventAvg()) \
        else "self_cuda_time_total"
    key = device_key if cuda else "self_cpu_time_total"
    tables = {}
    for c in cases:
        with profile(activities=acts) as prof:
            for _ in range(steps):
                c["step"]()
            sync(device)
        tables[c["name"]] = (f"## profile: {c['name']}, {steps} steps, sorted by {key}\n"
                             + prof.key_averages().table(sort_by=key, row_limit=rows, max_name_column_width=48))
        print(tables[c["name"]], flush=True)
    return tables


def case_row(c: dict, amp, steps: int, device) -> dict:
    s, info = median(c["times"]), c["info"]
    row = {"case": c["name"], "shape": info["shape"], "ms_step": s * 1e3, "clips_s": info["batch"] / s,
           "peak_bytes": c["peak"], "peak_kind": c["peak_kind"], "setup_and_warmup_s": c["setup_s"],
           "precision": info.get("precision", str(amp)), "step_ms_all": [t * 1e3 for t in c["times"]]}
    if c["base"] == "tubelet_contrast":
        row.update(synthesis_fraction(info, s, max(3, steps // 2), device))
    return row


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_mutually_exclusive_group()
    g.add_argument("--tiny", action="store_true", help="CPU sizes")
    g.add_argument("--smoke", action="store_true", help="the smallest sizes (tests)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--steps", type=int, default=None, help="timed steps per case (default 20 full, 5 tiny)")
    p.add_argument("--warmup", type=int, default=None)
    p.add_argument("--compile", action="store_true", help="torch.compile(dynamic=False) the step modules")
    p.add_argument("--precision", default="auto", help="vssl cases: auto | bf16 | fp16 | fp32")
    p.add_argument("--cases", default=",".join(CASES))
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = leave as is)")
    p.add_argument("--profile", action="store_true", help="print torch.profiler's top ops of each case")
    p.add_argument("--batch", type=int, default=None, help="override both batch sizes (e.g. full shapes on a CPU)")
    p.add_argument("--json", default=None, help="write the rows here")
    p.add_argument("--cpu-time", action="store_true",
                   help="time CPU cases by process CPU time (use with --threads 1 on a shared machine)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    clock = use_cpu_time(args.cpu_time)
    size_name = "smoke" if args.smoke else "tiny" if args.tiny else "full"
    size = dict(SIZES[size_name])
    if args.batch:
        size["vit_batch"] = size["cnn_batch"] = args.batch
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    amp = resolve_precision(args.precision, device)
    steps = args.steps or (20 if size_name == "full" else 5 if size_name == "tiny" else 1)
    warmup = args.warmup if args.warmup is not None else (3 if size_name == "full" or args.compile else 1)
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    bad = set(cases) - set(CASES)
    if bad:
        p.error(f"unknown cases {sorted(bad)}; choose from {CASES}")
    torch.manual_seed(0)
    print(f"# pretrain_step ({size_name}, {steps} steps, compile={args.compile}, timed by {clock}) on {hardware()}",
          flush=True)
    built, failed = [], []
    for name in cases:
        try:
            built.append(build_case(name, size, device, amp, warmup, args.compile))
            print(f"  built {name} ({built[-1]['setup_s']:.1f} s with warm-up)", flush=True)
        except torch.OutOfMemoryError as e:  # report and keep going: the other cases still count
            failed.append({"case": name, "error": f"out of memory: {str(e).splitlines()[0]}"})
            gc.collect()
            torch.cuda.empty_cache()
    time_interleaved(built, steps, device)
    rows = [case_row(c, amp, steps, device) for c in built] + failed
    for r in rows:
        print(f"  {r['case']}: " + (r.get("error") or f"{r['ms_step']:.1f} ms/step, {r['clips_s']:.1f} clips/s"),
              flush=True)
    by = {r["case"]: r for r in rows if "error" not in r}
    for r in rows:
        if "error" in r:
            continue
        base = {"videomae": "ref_videomae", "sigma": "ref_videomae", "tubelet_contrast": "bare_r2plus1d"}.get(r["case"])
        if base in by:
            r["vs"] = base
            r["speedup"] = r["clips_s"] / by[base]["clips_s"]
            if device.type == "cuda":
                r["mem_ratio"] = r["peak_bytes"] / max(by[base]["peak_bytes"], 1)
    table = []
    for r in rows:
        if "error" in r:
            table.append([r["case"], "", "", "", r["error"], "", ""])
            continue
        extra = ""
        if "synth_frac" in r:
            extra = (f"synthesis {r['synth_ms']:.1f} ms = {100 * r['synth_frac']:.1f} % of the step; "
                     f"all view building {100 * r['views_frac']:.1f} %")
        ratio = ""
        if "vs" in r:  # CPU RSS deltas are too rough for a memory ratio (allocator reuse between cases)
            mem = f", {r['mem_ratio']:.2f}x memory" if device.type == "cuda" else ""
            ratio = f"{r['speedup']:.2f}x clips/s{mem} vs {r['vs']}"
        table.append([r["case"], r["shape"], f"{r['ms_step']:.1f}", f"{r['clips_s']:.1f}",
                      f"{gib(r['peak_bytes'])} ({r['peak_kind']})", ratio, extra])
    print(markdown_table(["case", "input", "ms/step", "clips/s", "peak memory", "ratio", "note"], table))
    write_json(args.json, {"benchmark": "pretrain_step", "size": size_name, "hardware": hardware(),
                           "compile": args.compile, "clock": clock, "rows": rows})
    if args.profile:  # after the results are safe: a profiler failure must not lose them
        try:
            profile_cases(built, device)
        except Exception as e:  # noqa: BLE001
            print(f"profiling failed: {type(e).__name__}: {e}", flush=True)
    return rows


if __name__ == "__main__":
    main()
