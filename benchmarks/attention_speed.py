"""Why CPU training uses eager attention for short records: torch's SDPA vs eager attention, side by side.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/attention_speed.py [--iters 10]

Forward + backward of one attention call in bf16 with a causal mask given as a tensor (a left-padded
training batch always passes one), SmolLM2-135M's head shape (9 heads of 64), about 400 tokens per batch
at each length. `forgetless.models.runtime.training_attention` switches training on the CPU to eager
attention for records of at most 512 tokens from these figures.
"""

from __future__ import annotations

import argparse
import math
import time

import torch


def eager(q, k, v, mask):
    scores = (q @ k.transpose(-1, -2)) / math.sqrt(q.shape[-1]) + mask
    return torch.softmax(scores, -1, dtype=torch.float32).to(q.dtype) @ v


def sdpa(q, k, v, mask):
    return torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask)


def ms_per_step(fn, q, k, v, mask, iters: int) -> float:
    for _ in range(2):
        fn(q, k, v, mask).sum().backward()
    start = time.perf_counter()
    for _ in range(iters):
        fn(q, k, v, mask).sum().backward()
    return (time.perf_counter() - start) / iters * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=10)
    args = parser.parse_args()
    print(f"threads {torch.get_num_threads()}\n| tokens per record | batch | eager ms | sdpa ms | sdpa / eager |")
    print("|---|---|---|---|---|")
    for length in (48, 128, 256, 512):
        batch = max(1, 400 // length)
        q, k, v = (torch.randn(batch, 9, length, 64, dtype=torch.bfloat16, requires_grad=True) for _ in range(3))
        mask = torch.triu(torch.full((length, length), float("-inf")), 1).to(torch.bfloat16)
        fast, slow = ms_per_step(eager, q, k, v, mask, args.iters), ms_per_step(sdpa, q, k, v, mask, args.iters)
        print(f"| {length} | {batch} | {fast:.2f} | {slow:.2f} | {slow / fast:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
