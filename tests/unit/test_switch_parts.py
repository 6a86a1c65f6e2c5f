"""SwitchCIT switch parts without a real encoder: rehearsal memory, head, OOD metrics, Switch bookkeeping."""

from __future__ import annotations

import json
import zlib

import pytest
import torch

from forgetless.adapters.names import BASE
from forgetless.adapters.switch import RehearsalMemory, Switch, SwitchHead, keep_threshold, ood_metrics
from forgetless.adapters.switch.scores import id_scores
from forgetless.errors import ConfigError, DataError, ModelError


class RecordingEncoder:
    """A fake encoder: 'task<k> ...' prompts map near the k-th basis vector; records what it encoded."""

    name, dim = "fake", 8

    def __init__(self):
        self.calls: list[list[str]] = []

    def encode(self, prompts: list[str], batch_size: int = 64) -> torch.Tensor:
        self.calls.append(list(prompts))
        out = torch.zeros(len(prompts), self.dim)
        for row, prompt in enumerate(prompts):
            out[row, int(prompt[4]) if prompt.startswith("task") else self.dim - 1] = 3.0
            out[row, 5] = (zlib.crc32(prompt.encode()) % 7) / 70  # not hash(): salted per process
        return out


def task_prompts(k: int, n: int) -> list[str]:
    return [f"task{k} prompt number {i}" for i in range(n)]


def test_memory_sizes_follow_fraction_with_min_one_and_seed():
    memory = RehearsalMemory(fraction=0.01, seed=3)
    assert len(memory.add_task("big", task_prompts(0, 1000))) == 10
    assert len(memory.add_task("small", task_prompts(1, 50))) == 1  # int(0.5) -> at least 1
    assert len(RehearsalMemory(fraction=0.0001).add_task("x", task_prompts(0, 100_000))) == 10
    again = RehearsalMemory(fraction=0.01, seed=3)
    assert again.add_task("big", task_prompts(0, 1000)) == memory.prompts_of("big")
    other = RehearsalMemory(fraction=0.01, seed=4).add_task("big", task_prompts(0, 1000))
    assert other != memory.prompts_of("big")


def test_memory_keeps_task_zero_and_round_trips(tmp_path):
    memory = RehearsalMemory(fraction=0.1, seed=0)
    for k in range(3):
        memory.add_task(f"t{k}", task_prompts(k, 30))
    prompts, labels = memory.prompts_and_labels()
    assert sorted(set(labels)) == [0, 1, 2] and labels.count(0) == 3
    assert all(p.startswith("task0") for p, label in zip(prompts, labels, strict=True) if label == 0)
    loaded = RehearsalMemory.load(memory.save(tmp_path / "memory.json"))
    assert loaded.prompts_and_labels() == (prompts, labels) and loaded.task_names == ["t0", "t1", "t2"]
    with pytest.raises(ConfigError):
        memory.add_task("t1", ["again"])
    (tmp_path / "bad.json").write_text(json.dumps({"version": 1, "fraction": 0.1}))
    with pytest.raises(DataError):
        RehearsalMemory.load(tmp_path / "bad.json")


def test_head_learns_grows_and_is_seeded():
    gen = torch.Generator().manual_seed(0)
    centers = torch.randn(3, 16, generator=gen) * 3
    labels = torch.arange(3).repeat_interleave(40)
    features = centers[labels] + torch.randn(120, 16, generator=gen) * 0.3
    head = SwitchHead(16, num_tasks=2, hidden=32, epochs=10)
    old_rows = head.net[2].weight.detach().clone()
    head.fit(features, labels)  # label 2 grows the output layer
    assert head.num_tasks == 3 and (head.predict(features) == labels).float().mean() > 0.95
    assert torch.allclose(head.predict_proba(features).sum(-1), torch.ones(120))
    twin = SwitchHead(16, num_tasks=2, hidden=32, epochs=10)
    assert torch.equal(twin.net[2].weight, old_rows)
    twin.fit(features, labels)
    assert torch.equal(twin.logits(features), head.logits(features))
    with pytest.raises(DataError):
        head.fit(features[:, :8], labels)


def test_ood_metrics_hand_checked():
    # in > out pairs: 0.9 and 0.8 and 0.7 beat {0.65, 0.5}; 0.6 beats {0.5}: 7 of 12; one tie counts half.
    assert ood_metrics([0.9, 0.8, 0.7, 0.6], [0.65, 0.5, 0.95])["auroc"] == pytest.approx(7 / 12)
    assert ood_metrics([0.9, 0.5], [0.5])["auroc"] == pytest.approx(0.75)
    # 95% TPR of 4 in-scores keeps all 4 -> threshold 0.6; out-scores >= 0.6: 0.65 and 0.95.
    assert ood_metrics([0.9, 0.8, 0.7, 0.6], [0.65, 0.5, 0.95])["fpr_at_95_tpr"] == pytest.approx(2 / 3)
    in_scores = list(range(1, 101))  # 95% TPR keeps 6..100 -> threshold 6
    assert keep_threshold(in_scores, 0.95) == 6
    assert ood_metrics(in_scores, [5.5, 6, 50, -1]) == {
        "auroc": pytest.approx(1 - (5 + 5.5 + 49.5) / 400),
        "fpr_at_95_tpr": 0.5,
    }
    assert ood_metrics([2.0, 3.0], [0.0, 1.0]) == {"auroc": 1.0, "fpr_at_95_tpr": 0.0}


def test_energy_score_sign_higher_is_more_in_distribution():
    logits = torch.tensor([[10.0, 0.0], [0.1, 0.0]])
    assert id_scores(logits, "energy")[0] > id_scores(logits, "energy")[1]
    assert id_scores(logits, "max_softmax")[0] > id_scores(logits, "max_softmax")[1]
    with pytest.raises(ConfigError):
        id_scores(logits, "entropy")


def test_switch_trains_on_task_zero_memory_and_checks_dim_on_load(tmp_path):
    encoder = RecordingEncoder()
    switch = Switch(encoder=encoder, fraction=0.1, epochs=5)
    for k in range(3):
        switch.update(f"t{k}", task_prompts(k, 30), f"/adapters/t{k}")
    third_update = encoder.calls[-1]
    assert sum(p.startswith("task0") for p in third_update) == 3  # task 0's memory is trained on
    assert sum(p.startswith("task2") for p in third_update) == 30  # all of the current task
    routes = switch.route(["task0 new", "task2 new"])
    assert [r.task for r in routes] == ["t0", "t2"] and routes[1].adapter == "/adapters/t2"
    switch.threshold = 1.01  # no max-softmax reaches it: everything abstains
    assert all(r.task == BASE and r.adapter is None and r.abstained for r in switch.route(["task1 x"]))
    switch.save(tmp_path / "sw")
    loaded = Switch.load(tmp_path / "sw", encoder=RecordingEncoder())
    assert loaded.task_names == ["t0", "t1", "t2"] and loaded.threshold == 1.01
    narrow = RecordingEncoder()
    narrow.dim = 4
    with pytest.raises(ModelError, match="8-d"):
        Switch.load(tmp_path / "sw", encoder=narrow)
    with pytest.raises(ConfigError):
        switch.update("t1", ["task1 again"], "/x")
    with pytest.raises(ModelError):
        Switch(encoder=RecordingEncoder()).route(["hello"])
    with pytest.raises(ModelError):
        Switch.load(tmp_path / "missing", encoder=RecordingEncoder())
