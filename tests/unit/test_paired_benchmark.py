"""`benchmarks/train_throughput.py --paired`: the turnstile runs one arm's step at a time, round-robin,
and lets the others go on when an arm finishes (threads stand in for the arms' processes)."""

from __future__ import annotations

import importlib.util
import multiprocessing
import threading
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "train_throughput.py"


def _benchmark():
    spec = importlib.util.spec_from_file_location("train_throughput", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_arms_take_turns_one_step_each_and_finished_arms_drop_out():
    turnstile = _benchmark().Turnstile(multiprocessing.get_context("spawn"), 3)
    order, running = [], []

    def arm(index: int, steps: int) -> None:
        turnstile.wait(index)
        for step in range(steps):
            running.append(index)
            assert running == [index]  # nobody else runs meanwhile
            order.append("ABC"[index])
            running.remove(index)
            if step < steps - 1:
                turnstile.hand_over(index)
                turnstile.wait(index)
        turnstile.hand_over(index, finished=True)

    threads = [threading.Thread(target=arm, args=(i, n)) for i, n in enumerate((3, 1, 2))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert "".join(order) == "ABCACA"
