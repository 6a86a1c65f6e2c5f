"""SliCK knowledge probing (Gekhman et al. 2024, as used by Pletenev et al. 2025): which facts a model knows.

Each fact is asked under `n_exemplar_sets` few-shot prompts (system "Answer the following question.",
then `shots` exemplar turns "Question: q" / "Answer: a" drawn, seeded, from OTHER facts of the SAME
relation, then "Question: q"), so every relation needs at least `shots + 1` facts. Answers go through
`extract_answer` and `is_correct` (substring or exact):

    HighlyKnown  greedy answer correct under every prompt
    MaybeKnown   greedy answer correct under some prompts
    WeaklyKnown  greedy never correct, but some sampled answer (T=0.5, top-40) is
    Unknown      never correct

`p_correct` is the fraction of correct greedy answers. Sampling only matters to split WeaklyKnown from
Unknown, so `samples` answers per prompt are drawn ONLY for facts whose greedy answers are all wrong
(their `sample_correct` is the fraction of correct samples; it is None for the others). `samples=0`
means greedy only (no WeaklyKnown, as in the paper's code).

Facts that cannot be probed as asked (a duplicate id, a relation with no question and no template, a
relation with too few facts for `shots`) are refused by `check_facts` with a one-line user error BEFORE
anything is generated or cached. All prompts go through `generate_texts` in batches: facts are grouped
so one greedy call holds about `batch_size` prompts; the group's sampling call (if any) follows; then
the group's rows are appended to the cache (see probe_cache.py), so a killed run resumes where it stopped.

    from forgetless.knowledge.slick import ProbeSettings, probe_facts, summarize, write_probe_outputs
    probes = probe_facts(model, tokenizer, facts, ProbeSettings(samples=16), cache_dir="out/cache",
                         model_key=model_key(info.model_id, adapter, info.fingerprint))
    write_probe_outputs(probes, "out")          # facts.jsonl, summary.json, summary.md (atomic)

From the shell: `forgetless probe --facts facts.jsonl --output out/ [--adapter runs/x]`.
"""

from __future__ import annotations

import os
import random
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from forgetless.errors import ConfigError, DataError
from forgetless.knowledge.answers import MATCH_MODES, extract_answer, is_correct
from forgetless.knowledge.facts import Fact, RelationTemplates, question_for
from forgetless.knowledge.probe_cache import ProbeCache, cache_key, fact_hash
from forgetless.utils.fileio import write_json_atomic, write_jsonl_atomic, write_text_atomic

CATEGORIES = ("HighlyKnown", "MaybeKnown", "WeaklyKnown", "Unknown")
SYSTEM_PROMPT = "Answer the following question."
PROMPT_FORMAT = "slick-v3"  # bump when the prompt layout changes: it is part of the cache key
# bump when generation numerics change (bf16 flips near-tied answers; a "before" probed by another engine
# than the "after" would show up as category shifts): part of the cache key too
GENERATION_ENGINE = "cascade-v1"
MAX_KEPT_SAMPLES = 8  # distinct sampled answers kept per fact in the outputs
PREFIX_REUSE = 8  # batches per generate call, so each shared few-shot prefix is computed once per 8 batches
FACTS_FILE = "facts.jsonl"  # the per-fact output (one FactProbe per line, with its `category`)

GenerateFn = Callable[..., list[list[str]]]
ProgressFn = Callable[[int], None]


@dataclass
class ProbeSettings:
    """What a probe run does. All fields go into the cache key (the batch size is not here: it does not
    change which answers are correct)."""

    n_exemplar_sets: int = 10
    shots: int = 4
    samples: int = 16
    temperature: float = 0.5
    top_k: int = 40
    max_new_tokens: int = 32
    match: str = "substring"
    seed: int = 0

    def validate(self) -> ProbeSettings:
        checks = [
            (self.n_exemplar_sets >= 1, f"--exemplar-sets must be >= 1, got {self.n_exemplar_sets}"),
            (self.shots >= 0, f"--shots must be >= 0, got {self.shots}"),
            (self.samples >= 0, f"--samples must be >= 0 (0 = greedy only), got {self.samples}"),
            (self.max_new_tokens >= 1, f"--max-new-tokens must be >= 1, got {self.max_new_tokens}"),
            (self.match in MATCH_MODES, f"--match {self.match!r} is not known; use {' or '.join(MATCH_MODES)}"),
            (self.samples == 0 or self.temperature > 0, f"sampling temperature must be > 0, got {self.temperature}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
        return self

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "system": SYSTEM_PROMPT, "format": PROMPT_FORMAT, "engine": GENERATION_ENGINE}


@dataclass
class FactProbe:
    """The probe result of one fact (one line of facts.jsonl and of the cache)."""

    fact_id: str
    subject: str
    relation: str
    object: str
    category: str
    p_correct: float
    greedy_answers: list[str]
    greedy_correct: list[bool]
    sample_correct: float | None = None
    sampled_answers: list[str] = field(default_factory=list)
    exemplar_ids: list[list[str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, row: dict[str, Any]) -> FactProbe:
        names = cls.__dataclass_fields__
        return cls(**{key: value for key, value in row.items() if key in names})


def categorize(greedy_correct: Sequence[bool], sample_correct: Sequence[bool] = ()) -> str:
    """The SliCK category from per-prompt greedy correctness and per-sample correctness."""
    if greedy_correct and all(greedy_correct):
        return "HighlyKnown"
    if any(greedy_correct):
        return "MaybeKnown"
    if any(sample_correct):
        return "WeaklyKnown"
    return "Unknown"


# ------------------------------------------------------------------------------------------- prompts


def exemplar_sets(fact: Fact, pool: Sequence[Fact], settings: ProbeSettings) -> list[list[Fact]]:
    """`n_exemplar_sets` draws of `shots` OTHER facts of the same relation, shared across the relation.

    Set i of a relation is one seeded draw of two disjoint groups of `shots` facts, A and B, the same for
    every probed fact: a fact gets A, or B when it is itself in A. So each set has only two few-shot
    prefixes per relation, which `generate_shared_prefix` computes once each. A relation with fewer than
    `2 * shots` facts has no room for B: there the probed fact in A is swapped for the next drawn fact.
    Draws depend only on (seed, relation, set index) and the pool, not on the order of the facts. A pool
    with fewer than `shots` other facts gives shorter draws; `check_facts` refuses that before a probe.
    """
    relation = sorted((f for f in pool if f.relation == fact.relation), key=lambda f: f.id)
    count = min(settings.shots, len(relation) - 1)
    sets = []
    for index in range(settings.n_exemplar_sets):
        rng = random.Random(f"{settings.seed}|{fact.relation}|{index}")
        draw = rng.sample(relation, min(2 * count, len(relation)))
        first, second = draw[:count], draw[count:]
        if all(shot.id != fact.id for shot in first):
            sets.append(first)
        elif len(second) == count:
            sets.append(second)
        else:
            sets.append([second[0] if shot.id == fact.id else shot for shot in first])
    return sets


def build_conversation(fact: Fact, exemplars: Sequence[Fact], templates: RelationTemplates) -> list[dict[str, str]]:
    """System prompt, few-shot user/assistant turns, then the question (the paper's format)."""
    messages = [{"role": "system", "content": SYSTEM_PROMPT}]
    for shot in exemplars:
        messages.append({"role": "user", "content": f"Question: {question_for(shot, templates)}"})
        messages.append({"role": "assistant", "content": f"Answer: {shot.object}"})
    messages.append({"role": "user", "content": f"Question: {question_for(fact, templates)}"})
    return messages


# ------------------------------------------------------------------------------------------- probing


def probe_facts(
    model: Any,
    tokenizer: Any,
    facts: Sequence[Fact],
    settings: ProbeSettings | None = None,
    cache_dir: str | os.PathLike | None = None,
    model_key: str = "unknown-model",
    on_progress: ProgressFn | None = None,
    batch_size: int = 64,
    generate_fn: GenerateFn | None = None,
    templates: RelationTemplates | None = None,
    pool: Sequence[Fact] | None = None,
) -> list[FactProbe]:
    """Probe every fact (see the module docstring); results in the order of `facts`.

    `generate_fn(model, tokenizer, conversations, sampling, batch_size)` defaults to `generate_texts`.
    With `cache_dir`, completed facts are read from and appended to the cache for (model_key, settings).
    `pool` holds the facts exemplars are drawn from (default: `facts`; it must contain them), so a few
    facts can be probed behind the prompts of a larger set.
    `on_progress(n)` is called with the number of facts finished (cached ones first). Bad input
    (see `check_facts`) raises before any generation or cache write.
    """
    settings = (settings or ProbeSettings()).validate()
    if batch_size < 1:
        raise ConfigError(f"--batch-size must be >= 1, got {batch_size}")
    templates = templates if templates is not None else RelationTemplates()
    pool = list(pool) if pool is not None else list(facts)
    check_facts(pool, settings, templates)
    if len({f.id for f in facts} - {f.id for f in pool}):
        raise ConfigError("every probed fact must be in the exemplar pool; pass pool=None to draw from the facts")
    generate_fn = generate_fn or _default_generate
    cache = _open_cache(cache_dir, model_key, settings)
    cached = cache.load() if cache else {}
    results: dict[str, FactProbe] = {}
    todo: list[tuple[Fact, list[list[Fact]]]] = []
    for fact in facts:
        sets = exemplar_sets(fact, pool, settings)
        hit = _reusable(cached.get(fact.id), fact, sets)
        if hit is not None:
            results[fact.id] = hit
        else:
            todo.append((fact, sets))
    _report(on_progress, len(results))
    todo.sort(key=lambda item: item[0].relation)  # stable: facts of a relation share few-shot prefixes
    per_chunk = max(1, PREFIX_REUSE * batch_size // settings.n_exemplar_sets)
    for start in range(0, len(todo), per_chunk):
        chunk = todo[start : start + per_chunk]
        probes = _probe_chunk(model, tokenizer, chunk, settings, batch_size, generate_fn, templates)
        if cache:
            cache.append(_cache_row(probe, fact) for probe, (fact, _) in zip(probes, chunk, strict=True))
        results.update((probe.fact_id, probe) for probe in probes)
        _report(on_progress, len(chunk))
    return [results[fact.id] for fact in facts]


def _probe_chunk(
    model: Any,
    tokenizer: Any,
    chunk: Sequence[tuple[Fact, list[list[Fact]]]],
    settings: ProbeSettings,
    batch_size: int,
    generate_fn: GenerateFn,
    templates: RelationTemplates,
) -> list[FactProbe]:
    """One greedy call for all prompts of the chunk, then one sampling call for facts never right greedily."""
    from forgetless.engine.sampling import SamplingConfig

    per = settings.n_exemplar_sets
    conversations = [build_conversation(fact, ex, templates) for fact, sets in chunk for ex in sets]
    greedy_cfg = SamplingConfig(max_new_tokens=settings.max_new_tokens, temperature=0.0)
    outputs = generate_fn(model, tokenizer, conversations, greedy_cfg, batch_size)
    greedy = [_first_answers(outputs[i * per : (i + 1) * per]) for i in range(len(chunk))]
    marks = [_marks(fact, greedy[i], settings) for i, (fact, _) in enumerate(chunk)]
    need = [i for i, row in enumerate(marks) if not any(row)] if settings.samples > 0 else []
    sampled: dict[int, list[str]] = {}
    if need:
        sample_cfg = SamplingConfig(
            max_new_tokens=settings.max_new_tokens,
            temperature=settings.temperature,
            top_k=settings.top_k,
            num_return_sequences=settings.samples,
            seed=settings.seed,
        )
        convs = [conversations[i * per + k] for i in need for k in range(per)]
        out = generate_fn(model, tokenizer, convs, sample_cfg, batch_size)
        for slot, i in enumerate(need):
            sampled[i] = [extract_answer(text) for group in out[slot * per : (slot + 1) * per] for text in group]
    return [
        _make_probe(fact, sets, greedy[i], marks[i], sampled.get(i), settings) for i, (fact, sets) in enumerate(chunk)
    ]


def _marks(fact: Fact, answers: Sequence[str], settings: ProbeSettings) -> list[bool]:
    return [is_correct(answer, fact.answers, settings.match) for answer in answers]


def _make_probe(
    fact: Fact,
    sets: list[list[Fact]],
    answers: list[str],
    marks: list[bool],
    samples: list[str] | None,
    settings: ProbeSettings,
) -> FactProbe:
    sample_marks = _marks(fact, samples or [], settings)
    return FactProbe(
        fact_id=fact.id,
        subject=fact.subject,
        relation=fact.relation,
        object=fact.object,
        category=categorize(marks, sample_marks),
        p_correct=sum(marks) / len(marks),
        greedy_answers=answers,
        greedy_correct=marks,
        sample_correct=sum(sample_marks) / len(sample_marks) if sample_marks else None,
        sampled_answers=list(dict.fromkeys(samples or []))[:MAX_KEPT_SAMPLES],
        exemplar_ids=[[shot.id for shot in ex] for ex in sets],
    )


def _first_answers(groups: Sequence[Sequence[str]]) -> list[str]:
    return [extract_answer(group[0] if group else "") for group in groups]


def _default_generate(model, tokenizer, conversations, sampling, batch_size) -> list[list[str]]:
    """Shared-prefix batched generation; `batch_size` counts decoded rows (samples included)."""
    from forgetless.engine.prefix import generate_shared_prefix

    return generate_shared_prefix(model, tokenizer, conversations, sampling, batch_size, stop_at_newline=True)


def _report(on_progress: ProgressFn | None, count: int) -> None:
    if on_progress and count:
        on_progress(count)


def check_facts(facts: Sequence[Fact], settings: ProbeSettings, templates: RelationTemplates | None = None) -> None:
    """Refuse facts that cannot be probed as `settings` ask, with one clear user error; generates nothing.

    DataError: a fact id occurs twice, or a fact's relation has no template and the fact no question.
    ConfigError: a relation has fewer than `shots` OTHER facts to draw exemplars from.
    """
    templates = templates if templates is not None else RelationTemplates()
    seen: set[str] = set()
    for fact in facts:
        if fact.id in seen:
            raise DataError(f"fact id {fact.id!r} occurs twice ({fact.subject}); give each fact a unique id")
        seen.add(fact.id)
        try:
            question_for(fact, templates)
        except DataError as exc:
            raise DataError(f"fact {fact.id} ({fact.subject}): {exc}") from None
    counts = Counter(fact.relation for fact in facts)
    short = sorted((count, relation) for relation, count in counts.items() if count - 1 < settings.shots)
    if short:
        count, relation = short[0]
        others = f" (and {len(short) - 1} more relation{'s' if len(short) > 2 else ''})" if len(short) > 1 else ""
        best = min(counts.values()) - 1
        raise ConfigError(
            f"relation {relation!r} has only {count} fact{'s' if count != 1 else ''}{others}, too few for "
            f"--shots {settings.shots}: each prompt needs {settings.shots} other facts of the same relation; "
            f"pass --shots {best} or add facts (at least {settings.shots + 1} per relation)"
        )


def _open_cache(cache_dir: str | os.PathLike | None, model_key: str, settings: ProbeSettings) -> ProbeCache | None:
    if cache_dir is None:
        return None
    meta = {"model": model_key, "settings": settings.to_dict()}
    return ProbeCache(cache_dir, cache_key(model_key, settings.to_dict()), meta)


def _cache_row(probe: FactProbe, fact: Fact) -> dict[str, Any]:
    return {**probe.to_dict(), "fact_hash": fact_hash(fact.to_dict())}


def _reusable(row: dict[str, Any] | None, fact: Fact, sets: list[list[Fact]]) -> FactProbe | None:
    """The cached probe if the fact and its few-shot exemplars are unchanged, else None."""
    if row is None or row.get("fact_hash") != fact_hash(fact.to_dict()):
        return None
    if row.get("exemplar_ids") != [[shot.id for shot in ex] for ex in sets]:
        return None
    return FactProbe.from_dict(row)


# ------------------------------------------------------------------------------------------- outputs


def summarize(probes: Sequence[FactProbe]) -> dict[str, Any]:
    """Counts per category and per relation x category, plus the mean P_correct."""
    counts = dict.fromkeys(CATEGORIES, 0)
    by_relation: dict[str, dict[str, int]] = {}
    for probe in probes:
        counts[probe.category] += 1
        row = by_relation.setdefault(probe.relation, {**dict.fromkeys(CATEGORIES, 0), "total": 0})
        row[probe.category] += 1
        row["total"] += 1
    mean = sum(p.p_correct for p in probes) / len(probes) if probes else 0.0
    return {
        "total": len(probes),
        "categories": counts,
        "by_relation": dict(sorted(by_relation.items())),
        "mean_p_correct": round(mean, 4),
    }


def summary_markdown(summary: dict[str, Any]) -> str:
    """The summary as a Markdown table: one row per relation, then the total row."""
    header = ["relation", *CATEGORIES, "total"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for relation, row in summary["by_relation"].items():
        lines.append("| " + " | ".join([relation, *(str(row[c]) for c in CATEGORIES), str(row["total"])]) + " |")
    totals = [str(summary["categories"][c]) for c in CATEGORIES]
    lines.append("| " + " | ".join(["**all**", *totals, str(summary["total"])]) + " |")
    mean = summary["mean_p_correct"]
    return "# SliCK knowledge probe\n\n" + "\n".join(lines) + f"\n\nMean P_correct (greedy): {mean:.4f}\n"


def write_probe_outputs(
    probes: Sequence[FactProbe], output_dir: str | os.PathLike, meta: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Write facts.jsonl, summary.json (with `meta`, e.g. model and settings) and summary.md; atomic."""
    output = Path(output_dir)
    summary = summarize(probes)
    write_jsonl_atomic(output / FACTS_FILE, (probe.to_dict() for probe in probes))
    write_json_atomic(output / "summary.json", {**(meta or {}), **summary})
    write_text_atomic(output / "summary.md", summary_markdown(summary))
    return summary
