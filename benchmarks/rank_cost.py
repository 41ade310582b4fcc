"""What one adapted matrix's two products cost, forward and backward, at each rank.

SaLoRA leaves each matrix at its own rank, and a pruned model is expected to step faster than LoRA at
r_init. On a CPU that holds only if a product's cost falls with the rank, and at MiniLM's sizes it
does not: the BLAS picks its kernel by shape, and the rank is one of the small dimensions of all
four products (x Aᵀ, h Bᵀ and their gradients), so some ranks below r_init cost more than r_init
(on this machine, 2026-12-03, two runs of `make bench`: ranks 9-11 cost 1.05-1.48 x rank 12 at 224 tokens,
rank 1 a quarter to a half). `make bench`
prints the table so a pruned row's time can be read against the shapes it computes with.

    python benchmarks/rank_cost.py [--tokens 224] [--repeats 100]
"""
from __future__ import annotations

import argparse
import random
import statistics
import time

import torch
import torch.nn.functional as F

# MiniLM-L6's adapted shapes (d_in, d_out): attention and attention output, FFN in, FFN out
SHAPES = [(384, 384), (384, 1536), (1536, 384)]


def layer_cost_by_rank(tokens: int, ranks: list[int], repeats: int, device: torch.device = torch.device("cpu"),
                       seed: int = 0) -> dict[tuple[int, int], dict[int, float]]:
    """{(d_in, d_out): {rank: median seconds}} of F.linear(F.linear(x, A), B) and its backward (x, A
    and B need gradients, as in a layer of a network). Every round times each rank once, in a shuffled
    order, so a drift of the machine's speed falls on all ranks alike."""
    g = torch.Generator().manual_seed(seed)
    order = random.Random(seed)
    out = {}
    for d_in, d_out in SHAPES:
        x = torch.randn(tokens, d_in, generator=g).to(device).requires_grad_()
        grad = torch.randn(tokens, d_out, generator=g).to(device)
        mats = {r: (torch.randn(r, d_in, generator=g).to(device).requires_grad_(),
                    torch.randn(d_out, r, generator=g).to(device).requires_grad_()) for r in ranks}
        times = {r: [] for r in ranks}
        shuffled = list(ranks)
        for i in range(repeats + 5):  # the first 5 rounds warm up
            order.shuffle(shuffled)
            for r in shuffled:
                A, B = mats[r]
                _sync(device)
                t0 = time.perf_counter()
                F.linear(F.linear(x, A), B).backward(grad)
                _sync(device)
                if i >= 5:
                    times[r].append(time.perf_counter() - t0)
                x.grad = A.grad = B.grad = None
        out[(d_in, d_out)] = {r: statistics.median(t) for r, t in times.items()}
    return out


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def print_table(costs: dict[tuple[int, int], dict[int, float]], reference: int, tokens: int) -> None:
    ranks = list(next(iter(costs.values())))
    print(f"\none adapted matrix, forward + backward at {tokens} tokens, time ÷ time at rank {reference}:")
    print(f"  {'d_in × d_out':14s} " + " ".join(f"{'r' + str(r):>5s}" for r in ranks) + f"   r{reference} (µs)")
    for (d_in, d_out), by_rank in costs.items():
        ratios = " ".join(f"{by_rank[r] / by_rank[reference]:5.2f}" for r in ranks)
        print(f"  {f'{d_in} × {d_out}':14s} {ratios}   {1e6 * by_rank[reference]:.0f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=224, help="rows of x (the SST-2 short batch: 16 × 14)")
    ap.add_argument("--repeats", type=int, default=100)
    ap.add_argument("--r-init", type=int, default=12)
    args = ap.parse_args()
    ranks = list(range(1, args.r_init + 1))
    print_table(layer_cost_by_rank(args.tokens, ranks, args.repeats), args.r_init, args.tokens)


if __name__ == "__main__":
    main()
