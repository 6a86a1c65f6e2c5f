"""The prototype switch (class means + shared shrunk covariance, Mahalanobis), per-task thresholds, and the
routing-loss breakdown, against reference formulas written out here. No real encoder: fast."""

from __future__ import annotations

import hashlib
import math

import numpy as np
import pytest
import torch

from forgetless.adapters.names import BASE
from forgetless.adapters.switch import Switch
from forgetless.adapters.switch.memory import RehearsalMemory, sample_size
from forgetless.adapters.switch.prototype import PrototypeHead, ledoit_wolf, task_statistics
from forgetless.adapters.switch.scores import (
    MIN_PER_TASK,
    conformal_threshold,
    normal_threshold,
    per_task_thresholds,
)
from forgetless.continual.routing_loss import bwt_split, routing_breakdown
from forgetless.errors import ConfigError, DataError
from tests.unit.test_switch_parts import RecordingEncoder, task_prompts


def rows(seed: int, n: int, d: int = 6, shift: float = 0.0, scale: float = 1.0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=gen, dtype=torch.float64) * scale + shift


def lw_reference(centred: np.ndarray) -> float:
    """Ledoit & Wolf (2004) shrinkage of the covariance of already-centred rows, straight from the paper."""
    n, d = centred.shape
    s = centred.T @ centred / n
    mu = np.trace(s) / d
    delta2 = np.sum((s - mu * np.eye(d)) ** 2) / d
    beta2 = sum(np.sum((np.outer(x, x) - s) ** 2) for x in centred) / (n * n * d)
    return min(beta2, delta2) / delta2


def test_ledoit_wolf_from_statistics_equals_the_formula_on_all_rows():
    a, b = rows(0, 40), rows(1, 25, shift=3.0, scale=2.0)
    sa, sb = task_statistics(a), task_statistics(b)
    centred = torch.cat([a - a.mean(0), b - b.mean(0)]).numpy()
    got = ledoit_wolf(sa["scatter"] + sb["scatter"], float(sa["fourth"][0] + sb["fourth"][0]), 65)
    assert got == pytest.approx(lw_reference(centred), rel=1e-9)


def test_adding_a_task_keeps_old_statistics_and_gives_the_exact_shared_covariance():
    a, b, c = rows(0, 30), rows(1, 20, shift=2.0), rows(2, 25, shift=-2.0, scale=0.5)
    head = PrototypeHead(6, shrinkage=0.2)
    head.add_task(a)
    before = {k: v.clone() for k, v in head.stats[0].items()}
    head.add_task(b)
    head.add_task(c)
    assert all(torch.equal(before[k], head.stats[0][k]) for k in before)
    centred = torch.cat([x - x.mean(0) for x in (a, b, c)])
    pooled = centred.T @ centred / len(centred)
    expected = 0.8 * pooled + 0.2 * (pooled.trace() / 6) * torch.eye(6, dtype=torch.float64)
    assert torch.allclose(head.covariance(), expected, atol=1e-12)


def test_distances_are_mahalanobis_to_each_task_mean():
    data = [rows(0, 30), rows(1, 30, shift=1.5)]
    head = PrototypeHead(6)  # Ledoit-Wolf
    for x in data:
        head.add_task(x)
    inverse = torch.linalg.inv(head.covariance())
    probe = rows(9, 5, shift=0.7)
    for t, x in enumerate(data):
        diff = probe - x.mean(0)
        reference = torch.einsum("nd,de,ne->n", diff, inverse, diff)
        assert torch.allclose(head.distances(probe)[:, t], reference, rtol=1e-9)
    assert torch.allclose(head.logits(probe), (-0.5 * head.distances(probe)).float())


def test_normal_threshold_is_a_normal_quantile_and_needs_enough_prompts():
    scores = [float(s) for s in range(10)]
    z = 2.3263478740408408  # Φ^-1(0.99)
    assert normal_threshold(scores, 0.99) == pytest.approx(np.mean(scores) - z * np.std(scores, ddof=1))
    distances = [-0.5 * d for d in (100.0, 120, 140, 90, 110, 130, 105, 115, 125, 95)]
    logs = np.log([-2 * s for s in distances])
    expected = -0.5 * math.exp(logs.mean() + z * logs.std(ddof=1))
    assert normal_threshold(distances, 0.99, distance=True) == pytest.approx(expected)
    with pytest.raises(DataError, match=f"at least {MIN_PER_TASK} held-out calibration prompts per task, got 9"):
        normal_threshold(scores[:9], 0.99)
    with pytest.raises(DataError, match=f"task 'b': per-task abstain .* at least {MIN_PER_TASK} .* got 9"):
        per_task_thresholds({"a": scores, "b": scores[:9]}, 0.99)
    wide = [float(s) for s in range(-50, 0, 5)]
    mlp = per_task_thresholds({"a": scores, "b": wide}, 0.99)  # mlp scores: the normal fit alone
    assert mlp == {"a": normal_threshold(scores, 0.99), "b": normal_threshold(wide, 0.99)}


def test_conformal_threshold_is_the_split_conformal_rank():
    scores = list(range(200, 0, -1))  # 200 distinct scores
    assert conformal_threshold(scores, 0.99) == 2  # rank ceil(201 * 0.99) = 199 from the top
    assert conformal_threshold(scores, 0.95) == 10  # rank ceil(201 * 0.95) = 191
    assert conformal_threshold(scores[:50], 0.99) == 151  # rank 51 > 50: the smallest score


def test_per_task_thresholds_take_the_most_lenient_of_fit_farthest_prompt_and_pooled_quantile():
    rng = np.random.default_rng(0)
    tight, wide = -0.5 * np.exp(rng.normal(5.0, 0.1, 40)), -0.5 * np.exp(rng.normal(6.0, 0.4, 160))
    out = per_task_thresholds({"tight": tight, "wide": wide}, 0.99, distance=True)
    pooled = conformal_threshold(np.concatenate([tight, wide]), 0.99)
    for name, scores in (("tight", tight), ("wide", wide)):
        parts = (normal_threshold(scores, 0.99, distance=True), scores.min(), pooled)
        assert out[name] == min(parts) and out[name] <= scores.min()
    assert out["tight"] == pooled  # a tight task is never held to a tighter limit than the pooled tail


def test_heavy_tailed_tasks_keep_their_fresh_prompts_and_far_prompts_still_abstain():
    """Task features with a heavy tail (multivariate t, 1.5 degrees of freedom): a normal fit of log d² alone
    (the old rule) abstains on 2-4% of fresh in-distribution prompts at keep 0.99; these thresholds on about
    0.6% (mean over 10 held-out draws of 60 prompts per task), and prompts far from every task still abstain."""
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)  # the Chi2 draws
    d, keep, df, shifts = 8, 0.99, 1.5, (0.0, 12.0)

    def t_rows(n: int, shift: float) -> torch.Tensor:
        gauss = torch.randn(n, d, generator=gen, dtype=torch.float64)
        chi2 = torch.distributions.Chi2(torch.tensor(df, dtype=torch.float64)).sample((n, 1))
        return gauss * torch.sqrt(df / chi2) + shift

    head = PrototypeHead(d)
    for shift in shifts:
        head.add_task(t_rows(400, shift))

    def scores(x: torch.Tensor, task: int) -> np.ndarray:
        return (-0.5 * head.distances(x)[:, task]).numpy()

    fresh = [scores(t_rows(20000, shift), t) for t, shift in enumerate(shifts)]
    old_rates, new_rates = [], []
    for _ in range(10):
        held = {t: scores(t_rows(60, shift), t) for t, shift in enumerate(shifts)}
        new = per_task_thresholds(held, keep, distance=True)
        for t, s in held.items():
            old_rates.append((fresh[t] < normal_threshold(s, keep, distance=True)).mean())
            new_rates.append((fresh[t] < new[t]).mean())
    assert np.mean(old_rates) > 2 * (1 - keep)  # the normal fit misses the tail
    assert np.mean(new_rates) <= 1 - keep
    far = torch.full((5, d), 6.0, dtype=torch.float64) + 100.0 * torch.eye(5, d, dtype=torch.float64)
    distances = head.distances(far)
    limits = torch.tensor([new[int(t)] for t in distances.argmin(dim=1)], dtype=torch.float64)
    assert (-0.5 * distances.min(dim=1).values < limits).all()


def stats_hashes(folder) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted((folder / "prototypes").iterdir())}


def test_prototype_switch_routes_abstains_and_adds_a_task_without_touching_old_files(tmp_path):
    encoder = RecordingEncoder()
    switch = Switch(encoder=encoder, fraction=0.0, switch_type="prototype")
    switch.update("a", task_prompts(0, 30), "adapters/a")
    switch.update("b", task_prompts(1, 30), "adapters/b")
    held = {"a": task_prompts(0, 40)[30:], "b": task_prompts(1, 40)[30:]}
    thresholds = switch.calibrate_per_task(held, keep=0.99)
    assert set(thresholds) == {"a", "b"} and thresholds["a"] != thresholds["b"]
    routes = switch.route(["task0 new prompt", "task1 new prompt", "something else"])
    assert [r.task for r in routes] == ["a", "b", BASE] and routes[2].abstained
    assert len(switch.memory) == 0  # rehearsal 0: no prompt kept, none needed
    switch.save(tmp_path)
    before = stats_hashes(tmp_path)
    loaded = Switch.load(tmp_path, encoder=encoder)
    assert loaded.thresholds == thresholds and loaded.switch_type == "prototype"
    loaded.update("c", task_prompts(2, 30), "adapters/c")
    loaded.calibrate_per_task(held | {"c": task_prompts(2, 40)[30:]}, keep=0.99)
    loaded.save(tmp_path)
    after = stats_hashes(tmp_path)
    assert {k: after[k] for k in before} == before and len(after) == 3
    assert [r.task for r in Switch.load(tmp_path, encoder=encoder).route(["task2 x", "task0 y"])] == ["c", "a"]


def test_per_task_calibration_names_the_task_and_the_number_needed():
    switch = Switch(encoder=RecordingEncoder(), switch_type="prototype")
    switch.update("a", task_prompts(0, 30), "adapters/a")
    with pytest.raises(DataError, match=r"task 'a': per-task abstain thresholds need at least 10 .* got 3"):
        switch.calibrate_per_task({"a": task_prompts(0, 3)}, keep=0.99)


def test_switch_type_and_score_are_checked():
    with pytest.raises(ConfigError, match="unknown switch_type 'knn'; use one of mlp, prototype"):
        Switch(encoder=RecordingEncoder(), switch_type="knn")
    with pytest.raises(ConfigError, match="prototype switch scores by its distance"):
        Switch(encoder=RecordingEncoder(), switch_type="prototype", score="energy")
    assert Switch(encoder=RecordingEncoder()).score == "max_softmax"  # mlp keeps the paper's default


def test_zero_rehearsal_keeps_no_prompt():
    assert sample_size(1000, 0.0) == 0 and sample_size(1000, 0.0001) == 1
    memory = RehearsalMemory(fraction=0.0)
    assert memory.add_task("a", task_prompts(0, 50)) == [] and memory.prompts_and_labels() == ([], [])
    assert RehearsalMemory.from_json(memory.to_json()).task_names == ["a"]


def test_routing_breakdown_by_hand():
    truth = ["a", "a", "a", "a", "b", "b"]
    routed = ["a", "b", None, "a", "a", "a"]
    out = routing_breakdown(truth, routed)
    assert out["a"] == {"right": 0.5, "misrouted": 0.25, "abstained": 0.25, "misrouted_to": {"b": 0.25}}
    assert out["b"] == {"right": 0.0, "misrouted": 1.0, "abstained": 0.0, "misrouted_to": {"a": 1.0}}


def test_bwt_splits_into_routing_and_adapter_parts_by_hand():
    R = [[0.0, 0.0, 0.0], [0.8, 0.0, None], [0.6, 0.9, 0.0], [0.5, 0.9, 0.7]]
    oracle = [[0.8, None, None], [0.8, 1.0, None], [0.8, 1.0, 0.7]]  # frozen adapters: the oracle never moves
    split = bwt_split(R, oracle)
    assert split["bwt"] == pytest.approx(((0.5 - 0.8) + (0.9 - 0.9)) / 2)
    assert split["bwt_adapter"] == 0.0 and split["bwt_routing"] == pytest.approx(split["bwt"])
    assert split["routing_loss"] == pytest.approx(((0.8 - 0.5) + (1.0 - 0.9) + 0.0) / 3)
    moved = [[0.8, None, None], [0.8, 1.0, None], [0.6, 1.0, 0.7]]  # an adapter that changed: adapter loss
    assert bwt_split(R, moved)["bwt_adapter"] == pytest.approx(-0.1)
    assert bwt_split(R[:3], oracle[:2]) == {}  # an unfinished run: task 3 was never scored on its adapter
