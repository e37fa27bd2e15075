"""SIGMA's Sinkhorn-Knopp at the ViT-B batch shape: vssl's log-domain ``sinkhorn`` against a
scaling-vector form that reads the (N, K) matrix twice per iteration instead of about 14 times.

At ViT-B, batch 64, 16x224x224 and mask 0.9 there are N = 64 * 8 * 176 = 90,112 masked tubes and
K = 3000 prototypes: one fp32 (N, K) matrix is 1.08 GB, and SIGMA runs Sinkhorn twice per step (target
and prediction scores), 10 iterations each. The log-domain loop touches the matrix about 14 times
per iteration (amax, subtract, exp, sum, subtract, add; then logsumexp and subtract along the other
dim), ~300 GB per step, ~100 ms at the H100's ~3 TB/s: by itself about the whole SIGMA target's step
budget (64 clips / 600 clips/s = 107 ms). The scaling form (``Q = diag(u) exp(S/eps) diag(v)``,
alternating ``v = (N/K) / (Q^T u)``, ``u = 1 / (Q v)``; the same fixed point, only the labels'
argmax is needed) moves ~2 + 2 * iters passes, ~25 GB per step.

This script checks that both give the same hard labels and times them (CPU by default, --device
cuda on a GPU). It is evidence for BENCHMARKS.md; vssl's ``sinkhorn`` is in vssl.methods.sigma.
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

try:
    from benchmarks.common import hardware, markdown_table, median, time_calls, use_cpu_time, write_json
except ImportError:  # run as a script
    from common import hardware, markdown_table, median, time_calls, use_cpu_time, write_json

from vssl.methods.sigma import sinkhorn


@torch.no_grad()
def sinkhorn_scaling_labels(scores: torch.Tensor, eps: float = 0.05, iters: int = 10) -> torch.Tensor:
    """argmax labels of the Sinkhorn assignment, through scaling vectors (one process)."""
    q = torch.exp((scores.float() - scores.max()) / eps)  # cosine scores: exp stays in fp32 range
    n, k = q.shape
    u = torch.ones(n, device=q.device)
    for _ in range(iters):
        v = (n / k) / (q.t() @ u)  # column step
        u = 1.0 / (q @ v)  # row step (u does not change a row's argmax)
    return (q * v).argmax(dim=1)


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
    ref = sinkhorn(scores, 0.05, 10, distributed=False).argmax(1)
    fast = sinkhorn_scaling_labels(scores, 0.05, 10)
    agree = (ref == fast).float().mean().item()
    t_log = median(time_calls(lambda: sinkhorn(scores, 0.05, 10, distributed=False).argmax(1), args.steps, 1, dev))
    t_vec = median(time_calls(lambda: sinkhorn_scaling_labels(scores, 0.05, 10), args.steps, 1, dev))
    rows = [{"impl": "vssl sinkhorn (log domain)", "ms": t_log * 1e3, "speedup": 1.0},
            {"impl": "scaling vectors", "ms": t_vec * 1e3, "speedup": t_log / t_vec}]
    print(f"# sinkhorn N={n} K={args.k}, timed by {clock}, on {hardware()} (label agreement {agree:.4f})")
    print(markdown_table(["implementation", "ms per call", "vs vssl"],
                         [[r["impl"], f"{r['ms']:.1f}", f"{r['speedup']:.2f}x"] for r in rows]))
    write_json(args.json, {"benchmark": "sinkhorn", "n": n, "k": args.k, "agreement": agree,
                           "hardware": hardware(), "clock": clock, "rows": rows})
    return rows


if __name__ == "__main__":
    main()
