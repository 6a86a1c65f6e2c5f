"""Router analysis of a LoRAMoE model: do the `world` experts light up on world samples?

The LoRAMoE paper (Dou et al., ACL 2024) shows that after training with the localized balancing
constraint, world-knowledge samples route more weight to the world group and task samples to the
task group. This module measures that on any labelled data set:

    usage = router_usage(model, tokenizer, load_records("data.jsonl"), world_experts=3)
    print(usage.to_markdown())
    print(usage.verdict())          # honest; warns when the assignment is inverted
    # heatmap + markdown + json: forgetless.adapters.loramoe.analysis_report.write_router_report

`router_usage` runs the model (eval, no grad) over left-padded batches, records every LoRAMoE layer's
gate probabilities through `balance_context`, and averages them over the NON-padding tokens (or only
the response tokens) of each sample type (`world`, `task`, `unlabelled`), pooled over tokens.

Note: minimising CV²(I∘Q) pushes Q toward 1/I, i.e. the constraint alone pushes a MATCHING group's
weight DOWN; whether training ends with the intended assignment is exactly what this checks.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from forgetless.errors import ModelError

TYPES = ("world", "task", "unlabelled")
_TYPE_CODE = {"world": 1, "task": 0, "unlabelled": -1}
TOKEN_MODES = ("all", "response")


@dataclass(frozen=True)
class GroupMeans:
    """Routing weight of each expert group for one layer (or the layer average) and one sample type.

    `*_per_expert` is the mean gate weight of ONE expert of the group (fair across unequal group
    sizes; uniform routing gives 1/N to both); `*_share` is the group's total share of the routing
    mass (world_share + task_share = 1). A per-expert value is NaN when its group is empty.
    """

    world_per_expert: float
    task_per_expert: float
    world_share: float
    task_share: float

    def to_dict(self) -> dict[str, float | None]:
        return {k: _json_float(v) for k, v in self.__dict__.items()}


@dataclass
class RouterUsage:
    """Mean router weight per layer × sample type × expert (`means[l, k, n]`), pooled over tokens.

    `layers` are the LoRAMoE module names (rows of `means`), `types` the sample types present (at
    least one counted token each), experts `0..world_experts-1` form the world group, the rest the
    task group. `samples`/`tokens` count what was averaged per type.
    """

    layers: list[str]
    types: list[str]
    means: np.ndarray
    num_experts: int
    world_experts: int
    samples: dict[str, int] = field(default_factory=dict)
    tokens: dict[str, int] = field(default_factory=dict)
    token_mode: str = "all"

    def __post_init__(self) -> None:
        self.means = np.asarray(self.means, dtype=np.float64)
        expected = (len(self.layers), len(self.types), self.num_experts)
        if self.means.shape != expected:
            raise ValueError(f"means has shape {self.means.shape}, expected (layers, types, experts) = {expected}")
        if not 0 <= self.world_experts <= self.num_experts:
            raise ValueError(f"world_experts={self.world_experts} must be in [0, {self.num_experts}]")
        unknown = [t for t in self.types if t not in TYPES]
        if unknown:
            raise ValueError(f"unknown sample types {unknown}; use {list(TYPES)}")

    # ---- group statistics -------------------------------------------------------------------

    def _groups(self, weights: np.ndarray) -> GroupMeans:
        k = self.world_experts
        world, task = weights[:k], weights[k:]
        total = float(weights.sum())
        return GroupMeans(
            world_per_expert=float(world.mean()) if world.size else math.nan,
            task_per_expert=float(task.mean()) if task.size else math.nan,
            world_share=float(world.sum()) / total if total else math.nan,
            task_share=float(task.sum()) / total if total else math.nan,
        )

    def group_means(self) -> dict[str, dict[str, GroupMeans]]:
        """{layer: {sample type: GroupMeans}} for every layer and sample type."""
        return {
            layer: {t: self._groups(self.means[i, j]) for j, t in enumerate(self.types)}
            for i, layer in enumerate(self.layers)
        }

    def summary(self) -> dict[str, GroupMeans]:
        """{sample type: GroupMeans} of the per-expert weights averaged over all layers."""
        return {t: self._groups(self.means[:, j].mean(axis=0)) for j, t in enumerate(self.types)}

    # ---- verdict ----------------------------------------------------------------------------

    def _preference(self, sample_type: str, tolerance: float) -> str | None:
        """'world' / 'task' (the group with more weight per expert), 'tie', or None (not comparable)."""
        if sample_type not in self.types:
            return None
        g = self.summary()[sample_type]
        w, t = g.world_per_expert, g.task_per_expert
        if math.isnan(w) or math.isnan(t):
            return None
        if abs(w - t) <= tolerance * (w + t) / 2:
            return "tie"
        return "world" if w > t else "task"

    def inverted(self, tolerance: float = 0.02) -> bool:
        """True if a labelled sample type prefers the OTHER group than intended (world <-> world experts)."""
        return any(self._preference(t, tolerance) not in (None, "tie", t) for t in ("world", "task"))

    def verdict(self, tolerance: float = 0.02) -> str:
        """One honest sentence per labelled sample type on which group serves it, averaged over layers.

        Weights are compared per expert; a relative gap below `tolerance` counts as no preference.
        Starts with `WARNING:` when the routing is the opposite of the intended assignment.
        """
        if self.world_experts in (0, self.num_experts):
            return (
                f"cannot compare groups: all {self.num_experts} experts are in one group "
                f"(world_experts={self.world_experts})"
            )
        labelled = [t for t in ("world", "task") if t in self.types]
        if not labelled:
            return "no world- or task-labelled samples: label records with `type` to compare the expert groups"
        summary = self.summary()
        sentences = []
        for sample_type in labelled:
            g = summary[sample_type]
            pref = self._preference(sample_type, tolerance)
            head = (
                f"{sample_type} samples route {g.world_per_expert:.3f}/expert to world experts "
                f"vs {g.task_per_expert:.3f} to task experts"
            )
            if pref == "tie":
                tail = f"no clear preference (gap under {tolerance:.0%})"
            elif pref == sample_type:
                tail = f"the {pref} group serves {sample_type} samples, as intended"
            else:
                tail = f"the {pref} group serves {sample_type} samples, the OPPOSITE of the intended assignment"
            sentences.append(f"{head}: {tail}.")
        if len(labelled) == 2:
            w, t = summary["world"], summary["task"]
            more = "more" if w.world_share > t.world_share else "less"
            sentences.append(
                f"The world group's share is {w.world_share:.1%} on world samples vs {t.world_share:.1%} "
                f"on task samples ({more} on world samples)."
            )
        text = " ".join(sentences)
        wrong = [t for t in labelled if self._preference(t, tolerance) not in (None, "tie", t)]
        if wrong:
            text = (
                f"WARNING: the routing contradicts the intended assignment for {' and '.join(wrong)} samples "
                "(minimising CV² of I∘Q pushes Q toward 1/I, so the balancing constraint can favour the "
                "non-matching group). " + text
            )
        return text

    # ---- rendering / serialisation ----------------------------------------------------------

    def to_markdown(self, per_layer: bool = False) -> str:
        """A markdown table of the layer-averaged group weights (plus one row per layer if `per_layer`)."""
        header = (
            "| layer | sample type | samples | tokens | world per expert | task per expert "
            "| world share | task share |\n"
            "|---|---|---:|---:|---:|---:|---:|---:|\n"
        )
        rows = []

        def row(layer: str, t: str, g: GroupMeans) -> str:
            return (
                f"| {layer} | {t} | {self.samples.get(t, 0)} | {self.tokens.get(t, 0)} | "
                f"{format_weight(g.world_per_expert)} | {format_weight(g.task_per_expert)} | "
                f"{format_weight(g.world_share, pct=True)} | {format_weight(g.task_share, pct=True)} |"
            )

        for t, g in self.summary().items():
            rows.append(row("mean of layers", t, g))
        if per_layer:
            for layer, by_type in self.group_means().items():
                for t, g in by_type.items():
                    rows.append(row(f"`{layer}`", t, g))
        return header + "\n".join(rows) + "\n"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (NaN written as null)."""
        return {
            "num_experts": self.num_experts,
            "world_experts": self.world_experts,
            "groups": {
                "world": list(range(self.world_experts)),
                "task": list(range(self.world_experts, self.num_experts)),
            },
            "token_mode": self.token_mode,
            "types": list(self.types),
            "samples": dict(self.samples),
            "tokens": dict(self.tokens),
            "layers": list(self.layers),
            "means": [[[_json_float(v) for v in experts] for experts in by_type] for by_type in self.means.tolist()],
            "summary": {t: g.to_dict() for t, g in self.summary().items()},
            "per_layer": {
                layer: {t: g.to_dict() for t, g in by_type.items()} for layer, by_type in self.group_means().items()
            },
            "inverted": self.inverted(),
            "verdict": self.verdict(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RouterUsage:
        means = np.array([[[math.nan if v is None else v for v in e] for e in bt] for bt in d["means"]])
        if means.size == 0:
            means = means.reshape(len(d["layers"]), len(d["types"]), d["num_experts"])
        return cls(
            layers=list(d["layers"]),
            types=list(d["types"]),
            means=means,
            num_experts=int(d["num_experts"]),
            world_experts=int(d["world_experts"]),
            samples=dict(d.get("samples", {})),
            tokens=dict(d.get("tokens", {})),
            token_mode=d.get("token_mode", "all"),
        )


def format_weight(value: float, pct: bool = False) -> str:
    """A router weight as `0.1234` (or `12.3%` with `pct`); NaN as `n/a`."""
    if math.isnan(value):
        return "n/a"
    return f"{value:.1%}" if pct else f"{value:.4f}"


def _json_float(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


# ---- measurement ----------------------------------------------------------------------------


def _type_name(record_type: str | None) -> str:
    return record_type if record_type in ("world", "task") else "unlabelled"


def router_usage(
    model,
    tokenizer,
    records: Sequence[Any],
    batch_size: int = 8,
    max_length: int = 512,
    tokens: str = "all",
    world_experts: int | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> RouterUsage:
    """Mean gate probabilities of every LoRAMoE layer per sample type over the records' tokens.

    `records` are `Record`s (`.messages`, `.type`). `tokens="all"` averages over every non-padding
    token, `"response"` over the assistant tokens only. `world_experts` is the size of the world group
    (the adapter config's `n_world_experts`; None means num_experts // 2). `on_batch(n)` is called
    after each batch of n records (for a progress bar). Raises ModelError for a model without LoRAMoE.
    """
    import torch

    from forgetless.adapters.loramoe.balance import balance_context, loramoe_layers
    from forgetless.data.chat import IGNORE_INDEX, encode_messages
    from forgetless.data.collate import LeftPadCollator

    if tokens not in TOKEN_MODES:
        raise ValueError(f"tokens must be one of {list(TOKEN_MODES)}, not {tokens!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    layers = loramoe_layers(model)
    if not layers:
        raise ModelError("the model has no LoRAMoE layers: router analysis needs a LoRAMoE adapter")
    experts = {layer.num_experts for _, layer in layers}
    if len(experts) != 1:
        raise ModelError(f"LoRAMoE layers disagree on the number of experts ({sorted(experts)})")
    num_experts = experts.pop()
    k_world = num_experts // 2 if world_experts is None else world_experts
    if not 0 <= k_world <= num_experts:
        raise ValueError(f"world_experts={k_world} must be in [0, {num_experts}]")

    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    collate = LeftPadCollator(pad_id)
    device = next(model.parameters()).device
    names = [name for name, _ in layers]
    sums = np.zeros((len(layers), len(TYPES), num_experts), dtype=np.float64)
    token_counts = np.zeros(len(TYPES), dtype=np.int64)
    sample_counts = dict.fromkeys(TYPES, 0)

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for start in range(0, len(records), batch_size):
                chunk = records[start : start + batch_size]
                features = []
                for record in chunk:
                    ids, labels = encode_messages(tokenizer, record.messages, max_length=max_length)
                    t = _type_name(record.type)
                    sample_counts[t] += 1
                    features.append({"input_ids": ids, "labels": labels, "sample_type": _TYPE_CODE[t]})
                batch = collate(features)
                mask = batch["attention_mask"] != 0
                if tokens == "response":
                    mask &= batch["labels"] != IGNORE_INDEX
                codes = batch["sample_type"]
                # one-hot [B, K] of the sample type, times the token mask [B, T] -> weights [B, T, K]
                onehot = torch.stack([codes == _TYPE_CODE[t] for t in TYPES], dim=-1).to(torch.float64)
                weights = mask.to(torch.float64)[:, :, None] * onehot[:, None, :]
                token_counts += weights.sum(dim=(0, 1)).long().numpy()
                weights = weights.to(device)
                inputs = {k: batch[k].to(device) for k in ("input_ids", "attention_mask", "position_ids")}
                with balance_context(model, codes, batch["attention_mask"]) as recording:
                    model(**inputs, use_cache=False)
                    for i, (name, layer) in enumerate(recording):
                        if not layer.recorded_gates:
                            raise RuntimeError(f"{name}: no router weights were recorded during the forward")
                        calls = layer.recorded_gates  # one per forward call of the module (usually exactly one)
                        for g in calls:
                            g = g.reshape(mask.shape[0], mask.shape[1], -1).to(torch.float64)
                            sums[i] += torch.einsum("btk,btn->kn", weights, g).cpu().numpy() / len(calls)
                if on_batch is not None:
                    on_batch(len(chunk))
    finally:
        model.train(was_training)

    present = [j for j, _ in enumerate(TYPES) if token_counts[j] > 0]
    means = sums[:, present, :] / token_counts[present][None, :, None]
    types = [TYPES[j] for j in present]
    return RouterUsage(
        layers=names,
        types=types,
        means=means,
        num_experts=num_experts,
        world_experts=k_world,
        samples={t: sample_counts[t] for t in types},
        tokens={t: int(token_counts[TYPES.index(t)]) for t in types},
        token_mode=tokens,
    )


# ---- report ---------------------------------------------------------------------------------
