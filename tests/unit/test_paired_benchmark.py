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


def test_training_flops_per_token_counts_the_base_linears_and_lm_head_not_the_adapters(tokenizer):
    from peft import LoraConfig, get_peft_model

    from tests.conftest import build_tiny_llama

    model = build_tiny_llama(tokenizer)  # hidden 32, intermediate 64, 2 layers, 4 heads, 2 kv heads of 8
    per_layer = 32 * 32 * 2 + 32 * 16 * 2 + 32 * 64 * 3  # q, o; k, v; gate, up, down
    expected = 4 * (2 * per_layer + len(tokenizer) * 32)  # + the (tied) LM head
    assert _benchmark().training_flops_per_token(model) == expected
    lora = get_peft_model(model, LoraConfig(r=4, target_modules="all-linear"))
    assert _benchmark().training_flops_per_token(lora) == expected


def test_an_unknown_arm_is_refused_before_anything_loads(monkeypatch, capsys):
    import pytest

    module = _benchmark()
    monkeypatch.setattr(module, "bf16_limit", lambda: pytest.fail("measured before checking --arms"))
    monkeypatch.setattr("sys.argv", ["train_throughput.py", "--arms", "forgetless,plain,forgetless-flor"])
    with pytest.raises(SystemExit) as exit_info:
        module.main()
    assert exit_info.value.code == 2
    assert "unknown arm forgetless-flor" in capsys.readouterr().err
