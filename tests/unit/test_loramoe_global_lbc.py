"""Under DDP the localized balancing constraint is the GLOBAL batch's: two gloo processes, each with half
the samples, compute the same LBC value as one process with all of them, and after DDP's gradient
average the same gradient.

    .venv/bin/python -m pytest tests/unit/test_loramoe_global_lbc.py -q
"""

from __future__ import annotations

import os
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from forgetless.adapters.loramoe.balance import lbc_loss

B, T, N, WORLD_EXPERTS, DELTA = 6, 5, 4, 2, 0.1


def _batch():
    generator = torch.Generator().manual_seed(0)
    gates = torch.softmax(torch.randn(B, T, N, generator=generator), dim=-1)
    types = torch.tensor([1, 0, 1, 1, 0, -1])  # the halves differ in their mix of world / task samples
    mask = torch.ones(B, T, dtype=torch.long)
    mask[1, :2] = 0
    mask[4, :1] = 0
    return gates, types, mask


def _rank(rank: int, world: int, port: int, queue) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        gates, types, mask = _batch()
        half = slice(rank * B // world, (rank + 1) * B // world)
        mine = gates[half].clone().requires_grad_(True)
        loss = lbc_loss(mine, types[half], mask[half], WORLD_EXPERTS, DELTA)
        loss.backward()
        queue.put((rank, float(loss), (mine.grad / world).tolist()))  # DDP divides the summed grads by world
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_ranks_compute_the_global_batch_lbc_and_its_gradient():
    gates, types, mask = _batch()
    whole = gates.clone().requires_grad_(True)
    expected = lbc_loss(whole, types, mask, WORLD_EXPERTS, DELTA)
    expected.backward()
    expected = expected.detach()
    per_half = [lbc_loss(gates[i : i + 3], types[i : i + 3], mask[i : i + 3], WORLD_EXPERTS, DELTA) for i in (0, 3)]
    assert abs(float(sum(per_half).detach()) / 2 - float(expected)) > 1e-3  # per-rank LBC would be a different loss

    context = mp.get_context("spawn")
    queue = context.Queue()
    port = _free_port()
    workers = [context.Process(target=_rank, args=(r, 2, port, queue)) for r in range(2)]
    for worker in workers:
        worker.start()
    results = sorted(queue.get(timeout=120) for _ in workers)
    for worker in workers:
        worker.join(timeout=60)
    assert all(w.exitcode == 0 for w in workers)
    for rank, value, grad in results:
        assert abs(value - float(expected)) < 1e-5 * max(1.0, abs(float(expected)))
        want = whole.grad[rank * 3 : (rank + 1) * 3]
        assert torch.allclose(torch.tensor(grad), want, rtol=1e-4, atol=1e-7)
