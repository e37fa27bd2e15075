"""SIGMA's Sinkhorn-Knopp at the ViT-B batch shape: vssl's ``sinkhorn`` (scaling vectors since issue 7's
fix) against the log-domain loop it replaced, kept here as the baseline.

At ViT-B, batch 64, 16x224x224 and mask 0.9 there are N = 64 * 8 * 176 = 90,112 masked tubes and
K = 3000 prototypes: one fp32 (N, K) matrix is 1.08 GB, and SIGMA runs Sinkhorn twice per step (target
and prediction scores), 10 iterations each. The log-domain loop touches the matrix about 14 times
per iteration (amax, subtract, exp, sum, subtract, add; then logsumexp and subtract along the other
dim), ~300 GB per step, ~100 ms at the H100's ~3 TB/s: by itself about the whole SIGMA target's step
budget (64 clips / 600 clips/s = 107 ms). The scaling form (``Q = diag(u) exp(S/eps) diag(v)``,
alternating ``v = (N/K) / (Q^T u)``, ``u = 1 / (Q v)``; the same fixed point) makes ~8 + 2 * iters
passes per call (building the shifted kernel, the iterations, the final scaling), ~60 GB per step.

This script checks that both give the same assignments and hard labels and times them (CPU by
default, --device cuda on a GPU), together with issue 18's levers (``precision="bf16"``: the
iterations read a bf16 matrix; ``tol``: stop once the prototype masses are within 1 %), each with
the fraction of its labels equal to the fp32 labels. vssl's ``sinkhorn`` is in vssl.methods.sigma.
"""

from __future__ import annotations

import argparse
import math

import torch
import torch.nn.functional as F

try:
    from benchmarks.common import hardware, markdown_table, median, time_calls, use_cpu_time, write_json
except ImportError:  # run as a script
    from common import hardware, markdown_table, median, time_calls, use_cpu_time, write_json

from vssl.methods.sigma import sinkhorn, sinkhorn_labels


@torch.no_grad()
def sinkhorn_log_domain(scores: torch.Tensor, eps: float = 0.05, iters: int = 10) -> torch.Tensor:
    """The log-domain loop vssl used before (one process): ~14 passes over (N, K) per iteration."""
    log_q = scores.detach().float() / eps
    log_col_mass = math.log(log_q.shape[0] / log_q.shape[1])
    for _ in range(iters):
        log_q = log_q - torch.logsumexp(log_q, dim=0, keepdim=True) + log_col_mass
        log_q = log_q - torch.logsumexp(log_q, dim=1, keepdim=True)
    return log_q.exp()


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--n", type=int, default=None, help="rows (default: 90112 on CUDA, 8192 on CPU)")
    p.add_argument("--k", type=int, default=3000)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--json", default=None)
    p.add_argument("--cpu-time", action="store_true", help="time by process CPU time (with --threads 1)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    clock = use_cpu_time(args.cpu_time)
    dev = torch.device(args.device)
    n = args.n or (90112 if dev.type == "cuda" else 8192)
    torch.manual_seed(0)
    z = F.normalize(torch.randn(n, 256, device=dev), dim=1)
    protos = F.normalize(torch.randn(args.k, 256, device=dev), dim=1)
    scores = z @ protos.t()
    q_ref = sinkhorn_log_domain(scores, 0.05, 10)
    q_new = sinkhorn(scores, 0.05, 10, distributed=False)
    max_diff = (q_ref - q_new).abs().max().item()
    ref = q_ref.argmax(1)
    del q_ref
    q_bf16_diff = (sinkhorn(scores, 0.05, 10, distributed=False, precision="bf16") - q_new).abs().max().item()
    labels = q_new.argmax(1)
    del q_new
    agree = (ref == sinkhorn_labels(scores, 0.05, 10, distributed=False)).float().mean().item()
    levers = {  # issue 18: the same labels from fewer bytes or fewer rounds (agreement with the fp32 labels)
        "vssl sinkhorn_labels, precision bf16": dict(precision="bf16"),
        "vssl sinkhorn_labels, tol 1e-2": dict(tol=1e-2),
        "vssl sinkhorn_labels, bf16 + tol 1e-2": dict(precision="bf16", tol=1e-2),
    }
    lever_agree = {k: (labels == sinkhorn_labels(scores, 0.05, 10, distributed=False, **kw)).float().mean().item()
                   for k, kw in levers.items()}
    calls = {"log domain (vssl before, baseline)": lambda: sinkhorn_log_domain(scores, 0.05, 10).argmax(1),
             "vssl sinkhorn (scaling vectors) + argmax": lambda: sinkhorn(scores, 0.05, 10, distributed=False).argmax(1),
             "vssl sinkhorn_labels (SIGMA's loss)": lambda: sinkhorn_labels(scores, 0.05, 10, distributed=False)}
    calls.update({k: (lambda kw=kw: sinkhorn_labels(scores, 0.05, 10, distributed=False, **kw))
                  for k, kw in levers.items()})
    times = {k: [] for k in calls}
    for _ in range(args.steps):  # interleaved: one call of each per round
        for k, fn in calls.items():
            times[k] += time_calls(fn, 1, 1 if not times[k] else 0, dev)
    t_log = median(times["log domain (vssl before, baseline)"])
    rows = [{"impl": k, "ms": median(t) * 1e3, "speedup": t_log / median(t),
             **({"agreement_with_fp32": lever_agree[k]} if k in lever_agree else {})} for k, t in times.items()]
    print(f"# sinkhorn N={n} K={args.k}, timed by {clock}, on {hardware()} (label agreement {agree:.4f}, "
          f"max |Q - Q_log| {max_diff:.2e})")
    print(markdown_table(["implementation", "ms per call", "vs log domain", "labels = fp32 labels"],
                         [[r["impl"], f"{r['ms']:.1f}", f"{r['speedup']:.2f}x",
                           f"{r['agreement_with_fp32']:.4f}" if "agreement_with_fp32" in r else ""] for r in rows]))
    print(f"max |Q_bf16 - Q_fp32| {q_bf16_diff:.2e}")
    write_json(args.json, {"benchmark": "sinkhorn", "size": f"N={n} K={args.k}", "n": n, "k": args.k, "agreement": agree, "max_abs_diff": max_diff,
                           "bf16_max_abs_diff": q_bf16_diff, "hardware": hardware(), "clock": clock, "rows": rows})
    return rows


if __name__ == "__main__":
    main()
