"""Audit any adapter: what it taught and what it cost, measured on the same weights with it off and on.

    forgetless audit --adapter runs/x --facts facts.jsonl --output runs/x_audit [--mmlu 285]

"Before" is the base model with the adapter disabled (PEFT `disable_adapter`, or LoRAMoE layers off),
"after" is the same loaded model with the adapter on. Each snapshot holds:
- SliCK categories of every fact (`forgetless.knowledge.slick`, cached and resumable),
- zero-shot greedy answers to every fact's question (answer distribution, refusals),
- MMLU accuracy (log-likelihood of the letters, 5-shot, a seeded topic-stratified subsample) with its
  standard error,
- mean token loss on general text (MMLU questions with answers written out, not the scored ones).
The comparison gives the category transition matrix, positive/negative shifts, answer explosion,
refusal rates, the MMLU delta with a paired standard error, and the loss delta.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from forgetless.data.chat import prompt_messages
from forgetless.errors import ConfigError
from forgetless.knowledge.answers import extract_answer
from forgetless.knowledge.facts import Fact, question_for
from forgetless.knowledge.shifts import (
    answer_distribution,
    exploded_answers,
    refusal_rate,
    shift_counts,
    transition_matrix,
)
from forgetless.knowledge.slick import SYSTEM_PROMPT, ProbeSettings, probe_facts
from forgetless.knowledge.snapshot_cache import Snapshot, load_snapshot, save_snapshot


@dataclass
class AuditSettings:
    """What an audit measures and how much of it (defaults sized for a CPU run of minutes)."""

    probe: ProbeSettings = field(default_factory=lambda: ProbeSettings(n_exemplar_sets=4, samples=0))
    mmlu_n: int = 285  # 5 per topic; 0 skips MMLU
    mmlu_shots: int = 5
    general_n: int = 64  # general-text loss items; 0 skips it
    batch_size: int = 16
    probe_batch_size: int = 64  # decoded rows per step of the shared-prefix probe (64 was fastest on 2 cores)
    answer_tokens: int = 24
    seed: int = 0
    per_relation: int | None = None  # at most this many facts of each relation (seeded sample); None = all

    def validate(self) -> AuditSettings:
        """ConfigError naming the flag, before any model is loaded."""
        self.probe.validate()
        if self.per_relation is not None and self.per_relation < 1:
            raise ConfigError(f"--per-relation must be >= 1 (omit it to audit every fact), got {self.per_relation}")
        for flag, value in (("--mmlu", self.mmlu_n), ("--mmlu-shots", self.mmlu_shots), ("general", self.general_n)):
            if value < 0:
                raise ConfigError(f"{flag} must be >= 0 (0 skips it), got {value}")
        return self


def zero_shot_answers(model, tokenizer, facts: list[Fact], settings: AuditSettings) -> list[str]:
    """Greedy answers to each fact's question with the paper's system prompt and no exemplars."""
    from forgetless.engine.prefix import generate_shared_prefix
    from forgetless.engine.sampling import SamplingConfig

    convs = [prompt_messages(f"Question: {question_for(f)}", SYSTEM_PROMPT) for f in facts]
    sampling = SamplingConfig(max_new_tokens=settings.answer_tokens)
    out = generate_shared_prefix(model, tokenizer, convs, sampling, settings.probe_batch_size, stop_at_newline=True)
    return [extract_answer(a[0]) for a in out]


def measure(
    model,
    tokenizer,
    facts: list[Fact],
    settings: AuditSettings,
    cache_dir: Path,
    key: str,
    label: str = "model",
    pool: list[Fact] | None = None,
) -> Snapshot:
    """Probe, answer, and score one model state. The probes are cached per fact (probe_cache.py) and the
    rest per (model key, facts, settings) in `cache_dir/snapshot-*.json`, so a sweep measures its base
    once (a killed run loses at most the snapshot it was measuring). `pool`: the facts few-shot
    exemplars come from (default `facts`), so a subset is probed with the same prompts as the whole."""
    from forgetless.utils.console import progress

    with progress() as bar:
        task = bar.add_task(f"probing facts ({label})", total=len(facts))
        probes = probe_facts(
            model,
            tokenizer,
            facts,
            settings.probe,
            cache_dir=cache_dir,
            model_key=key,
            batch_size=settings.probe_batch_size,
            on_progress=lambda n: bar.advance(task, n),
            pool=pool,
        )
    cached = load_snapshot(cache_dir, key, facts, settings, probes)
    if cached is not None:
        return cached
    snapshot = _measure_rest(model, tokenizer, facts, settings, probes)
    save_snapshot(cache_dir, key, facts, settings, snapshot)
    return snapshot


def _measure_rest(model, tokenizer, facts: list[Fact], settings: AuditSettings, probes) -> Snapshot:
    from forgetless.eval.mmlu import evaluate_mmlu, sample_mmlu
    from forgetless.eval.textloss import general_texts, mean_token_loss

    snapshot = Snapshot(probes, zero_shot_answers(model, tokenizer, facts, settings))
    if settings.mmlu_n:
        items = sample_mmlu(settings.mmlu_n, seed=settings.seed, shots=settings.mmlu_shots)
        from forgetless.utils.console import progress

        with progress() as bar:
            task = bar.add_task(f"MMLU {settings.mmlu_shots}-shot", total=len(items))
            on_batch = lambda n: bar.advance(task, n)  # noqa: E731
            snapshot.mmlu = evaluate_mmlu(model, tokenizer, items, 8, settings.mmlu_shots, on_batch=on_batch)
    if settings.general_n:
        scored = {item.id for item in sample_mmlu(settings.mmlu_n, seed=settings.seed)} if settings.mmlu_n else set()
        pool = [i for i in sample_mmlu(settings.general_n * 2, seed=settings.seed + 1) if i.id not in scored]
        snapshot.general_loss = mean_token_loss(model, tokenizer, general_texts(pool[: settings.general_n]))
    return snapshot


def restrict(snapshot: Snapshot, facts: list[Fact], keep: set[str]) -> Snapshot:
    """The snapshot of `facts` limited to the facts in `keep` (probes and zero-shot answers)."""
    answers = [a for fact, a in zip(facts, snapshot.answers, strict=True) if fact.id in keep]
    probes = [p for p in snapshot.probes if p.fact_id in keep]
    return Snapshot(probes, answers, snapshot.mmlu, snapshot.general_loss)


def compare(before: Snapshot, after: Snapshot, explode_factor: float = 5.0) -> dict[str, Any]:
    """The audit numbers: shifts, answer distributions, refusals, MMLU and loss deltas."""
    cat_before = {p.fact_id: p.category for p in before.probes}
    cat_after = {p.fact_id: p.category for p in after.probes}
    result: dict[str, Any] = {
        "facts": len(before.probes),
        "transitions": transition_matrix(cat_before, cat_after),
        "shifts": shift_counts(cat_before, cat_after),
        "answers_before": answer_distribution(before.answers),
        "answers_after": answer_distribution(after.answers),
        "exploded_answers": exploded_answers(before.answers, after.answers, factor=explode_factor),
        "refusal_before": refusal_rate(before.answers),
        "refusal_after": refusal_rate(after.answers),
    }
    if before.mmlu is not None and after.mmlu is not None:
        result.update(mmlu_numbers(before.mmlu, after.mmlu))
    if before.general_loss is not None:
        result["general_loss_before"], result["general_loss_after"] = before.general_loss, after.general_loss
    return result


def mmlu_numbers(before, after) -> dict[str, Any]:
    """MMLU accuracies with standard errors, and the delta with its paired standard error."""
    from forgetless.eval.mmlu import mmlu_delta

    was_correct = {p.id: p.correct for p in before.predictions}
    diffs = [int(p.correct) - int(was_correct[p.id]) for p in after.predictions if p.id in was_correct]
    paired = _paired_stderr(diffs) if diffs else math.hypot(before.stderr, after.stderr)
    delta = mmlu_delta(before, after)
    return {
        "mmlu_before": before.accuracy,
        "mmlu_before_stderr": before.stderr,
        "mmlu_after": after.accuracy,
        "mmlu_after_stderr": after.stderr,
        "mmlu_delta": after.accuracy - before.accuracy,
        "mmlu_delta_stderr": paired,
        "mmlu_n": after.n,
        "mmlu_flips": {k: delta.get(k) for k in ("correct_to_wrong", "wrong_to_correct")},
    }


def _paired_stderr(diffs: list[int]) -> float:
    n = len(diffs)
    mean = sum(diffs) / n
    variance = sum((d - mean) ** 2 for d in diffs) / max(n - 1, 1)
    return math.sqrt(variance / n)
