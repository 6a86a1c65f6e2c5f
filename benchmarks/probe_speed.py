"""Probe speed: our batched SliCK probe vs a one-prompt-at-a-time loop, on the same facts in one run.

    .venv/bin/python benchmarks/probe_speed.py [--facts 96] [--loop-facts 4] [--sample-facts 12]
        [--sample-loop-facts 2] [--samples 4] [--rounds 2] [--batch-size 64] [--threads 1]

(--threads 1 keeps a shared, busy machine from oversubscribing torch's thread pool.)

Model: the embedded SmolLM2-135M-Instruct (`load_model(None)`, fp32 weights, bf16 autocast where the CPU
has it, in both arms). Facts: real country `capital` facts from `country_facts()` (the first --facts, in
country order). Both arms use the same `ProbeSettings` (3 exemplar sets, 4 shots, max 32 new tokens,
substring match) and the very same prompts (`exemplar_sets` + `build_conversation` over the same pool of
--facts facts; exemplar sets are drawn per relation, so most prompts of a set share their few-shot prefix):

- batched: `probe_facts(..., batch_size=--batch-size)`, no cache (what `forgetless probe` runs): prompts
  grouped by few-shot prefix, each prefix's KV cache computed once and read in place by the questions
  (cascade attention), rows decoded with continuous batching across prefixes, decoding stops per row at
  end-of-turn or at the line break after the answer (the probe reads the first line only);
- loop: every prompt on its own through `generate_texts(..., batch_size=1)` (HF `generate`, KV cache,
  stops at end-of-turn; the weights are cast to bf16 once for the whole arm, as the batched arm does),
  no cache; for samples > 0 the facts whose greedy answers are all wrong get
  `samples` sampled answers per prompt, again one prompt per call (as a straightforward re-implementation
  of the paper's procedure would do).

Two runs: greedy only (samples 0) on --facts facts (the loop arm on the first --loop-facts of them; the
rate is facts/s, so fewer facts only shortens the run), then samples 4 on --sample-facts facts that the
greedy run found Unknown (so every one of them is sampled; topped up with other facts if too few) with
exemplars still drawn from all --facts facts, the loop arm on the first --sample-loop-facts. Arms
alternate (batched first in odd rounds, loop first in even ones); the best round per arm is reported,
with per-round ratios. The loop's categories are checked against the batched ones for the facts both
probed (greedy decoding, so they should agree up to padding and bf16 numerics).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

import torch

from forgetless.engine.generate import generate_texts
from forgetless.engine.sampling import SamplingConfig
from forgetless.engine.weights import inference_weights
from forgetless.knowledge.answers import extract_answer, is_correct
from forgetless.knowledge.countries import country_facts
from forgetless.knowledge.facts import Fact, RelationTemplates
from forgetless.knowledge.slick import ProbeSettings, build_conversation, categorize, exemplar_sets, probe_facts
from forgetless.models.load import load_model


def loop_probe(model, tokenizer, facts: Sequence[Fact], pool: Sequence[Fact], settings: ProbeSettings) -> list[str]:
    """The naive way: every prompt is its own `generate_texts` call (batch size 1); returns categories."""
    templates = RelationTemplates()
    greedy_cfg = SamplingConfig(max_new_tokens=settings.max_new_tokens, temperature=0.0)
    sample_cfg = SamplingConfig(
        max_new_tokens=settings.max_new_tokens,
        temperature=settings.temperature,
        top_k=settings.top_k,
        num_return_sequences=max(1, settings.samples),
        seed=settings.seed,
    )
    categories = []
    for fact in facts:
        convs = [build_conversation(fact, ex, templates) for ex in exemplar_sets(fact, pool, settings)]
        answers = [extract_answer(generate_texts(model, tokenizer, [c], greedy_cfg, 1)[0][0]) for c in convs]
        marks = [is_correct(a, fact.answers, settings.match) for a in answers]
        sampled: list[str] = []
        if settings.samples > 0 and not any(marks):
            for conv in convs:
                sampled += [extract_answer(t) for t in generate_texts(model, tokenizer, [conv], sample_cfg, 1)[0]]
        categories.append(categorize(marks, [is_correct(s, fact.answers, settings.match) for s in sampled]))
    return categories


def prefill_report(model, tokenizer, facts: Sequence[Fact], settings: ProbeSettings) -> None:
    """How much of one loop call is the prompt's forward pass: compute that batching does not share."""
    from forgetless.data.chat import render_prompt, tokenize_prompt

    conv = build_conversation(facts[0], exemplar_sets(facts[0], facts, settings)[0], RelationTemplates())
    ids = torch.tensor([tokenize_prompt(tokenizer, render_prompt(tokenizer, conv))])
    cfg = SamplingConfig(max_new_tokens=settings.max_new_tokens)
    body = model.get_decoder()  # the transformer without the LM head (generate only needs the last logits)
    with torch.inference_mode():
        _, prefill = min((timed(lambda: body(ids)) for _ in range(3)), key=lambda r: r[1])
    answer, full = min(
        (timed(lambda: generate_texts(model, tokenizer, [conv], cfg, 1)) for _ in range(3)), key=lambda r: r[1]
    )
    print(
        f"one prompt ({ids.shape[1]} tokens): forward pass {prefill:.2f} s, whole greedy answer {full:.2f} s "
        f"({answer[0][0]!r}); prompt share {prefill / full:.0%}"
    )


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--facts", type=int, default=96)
    parser.add_argument("--loop-facts", type=int, default=4)
    parser.add_argument("--sample-facts", type=int, default=12)
    parser.add_argument("--sample-loop-facts", type=int, default=2)
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    model, tokenizer, info = load_model(None, device="cpu")
    facts = [f for f in country_facts() if f.relation == "capital"][: args.facts]
    greedy = ProbeSettings(n_exemplar_sets=3, shots=4, samples=0)
    sampled = ProbeSettings(n_exemplar_sets=3, shots=4, samples=args.samples)
    print(f"model {info.model_id}, torch threads {torch.get_num_threads()}, {len(facts)} capital facts")
    generate_texts(model, tokenizer, [[{"role": "user", "content": "Hi"}]], SamplingConfig(max_new_tokens=4))
    with inference_weights(model):
        prefill_report(model, tokenizer, facts, greedy)

    rows: dict[str, dict[str, list[float]]] = {}
    agree: dict[str, tuple[int, int]] = {}
    categories: dict[str, int] = {}

    def run(name: str, batch_facts: list[Fact], loop_count: int, settings: ProbeSettings, round_no: int) -> None:
        def batched():
            return probe_facts(model, tokenizer, batch_facts, settings, batch_size=args.batch_size, pool=facts)

        def loop():
            with inference_weights(model):  # cast to bf16 once for the arm, not once per prompt
                return loop_probe(model, tokenizer, batch_facts[:loop_count], facts, settings)

        arms = [("batched", batched, len(batch_facts)), ("loop", loop, loop_count)]
        if round_no % 2:
            arms.reverse()
        out = {}
        for arm, fn, count in arms:
            out[arm], seconds = timed(fn)
            rate = count / seconds
            rows.setdefault(name, {}).setdefault(arm, []).append(rate)
            print(f"round {round_no + 1} {name} {arm}: {count} facts in {seconds:.1f} s = {rate:.3f} facts/s")
        same = sum(p.category == c for p, c in zip(out["batched"], out["loop"], strict=False))
        agree[name] = (same, loop_count)
        if name.startswith("greedy"):
            categories.clear()
            for probe in out["batched"]:
                categories[probe.category] = categories.get(probe.category, 0) + 1
            unknown = [f for f, p in zip(batch_facts, out["batched"], strict=True) if p.category == "Unknown"]
            rest = [f for f, p in zip(batch_facts, out["batched"], strict=True) if p.category != "Unknown"]
            subset[:] = (unknown + rest)[: args.sample_facts]
            picked["unknown"] = min(len(unknown), args.sample_facts)

    subset: list[Fact] = []
    picked = {"unknown": 0}
    wall = time.perf_counter()
    for round_no in range(args.rounds):
        run("greedy (samples 0)", facts, args.loop_facts, greedy, round_no)
        if round_no == 0:
            frozen = list(subset)
        run(f"sampled (samples {args.samples})", frozen, args.sample_loop_facts, sampled, round_no)
    wall = time.perf_counter() - wall

    print(f"\nbatched greedy categories on {len(facts)} facts: {categories}")
    print(f"sampled run on {len(frozen)} facts, {picked['unknown']} of them Unknown in the greedy run")
    print(f"wall {wall:.0f} s\n")
    print("| run | batched facts/s | loop facts/s | speed-up | per-round speed-ups | categories agree |")
    print("|---|---|---|---|---|---|")
    for name, arms in rows.items():
        best_b, best_l = max(arms["batched"]), max(arms["loop"])
        per_round = " / ".join(f"{b / lo:.1f}×" for b, lo in zip(arms["batched"], arms["loop"], strict=True))
        same, count = agree[name]
        print(f"| {name} | {best_b:.3f} | {best_l:.3f} | **{best_b / best_l:.1f}×** | {per_round} | {same}/{count} |")


if __name__ == "__main__":
    main()
