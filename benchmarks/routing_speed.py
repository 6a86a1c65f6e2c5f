"""Routed generation speed: one mixed-adapter batch vs routing and generating every prompt on its own.

    .venv/bin/python benchmarks/routing_speed.py                      # N=64, the experiment's run if present
    .venv/bin/python benchmarks/routing_speed.py --run experiments/results/continual_switch/work/builtin/mlp_1%
    .venv/bin/python benchmarks/routing_speed.py --run runs/cit --n 96 --max-new-tokens 32
    .venv/bin/python benchmarks/routing_speed.py --n 8 --max-new-tokens 8     # smoke
    .venv/bin/python benchmarks/routing_speed.py --switch-only --n 64        # the switch alone, no LLM

Prompts: N spread evenly over the run's tasks (their eval prompts) and the base model (plain chat requests
that belong to no task). Both arms use the same loaded model (one base + every task LoRA), greedy decoding
and the same token budget:
  (a) mixed: the switch routes the whole batch at once, then `generate_mixed` answers it in chunks of
      --batch-size, each chunk ONE generate call whose rows use different adapters (and the base);
  (b) one by one: for each prompt, route it, then generate it alone with its adapter.
Also measured: the switch's own cost per prompt (MiniLM encoding + its head: the prototype switch's
Mahalanobis distances or the mlp switch's MLP), batched and one at a time, for the MiniLM encoder as it
was before 2026-11-30 (`OldMiniLM`) and the current one, alternated --repeats times on the same prompts
(medians), with a check that both route every prompt the same way. --switch-only measures only that.
Targets (issue 5): (a)/(b) >= 2x; switch <= 5 ms per prompt on CPU.

Without --run it uses experiments/results/continual_switch/work/builtin/prototype_1% (the default switch;
`.../builtin/mlp_1%` is the paper's) when that exists (run experiments/continual_switch.py first), else
builds a stand-in: random LoRAs (same shapes as trained ones) and a switch trained on the built-in tasks'
prompts. Random LoRAs never emit EOS, so every row runs to
the token budget; trained ones stop early, which batching pays for (a batch runs to its longest answer).
"""

from __future__ import annotations

import argparse
import itertools
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_RUN = ROOT / "experiments" / "results" / "continual_switch" / "work" / "builtin" / "prototype_1%"


def stand_in_run(folder: Path, tasks: tuple[str, ...] = ("num2words", "plural", "capital")) -> Path:
    """A minimal run directory: random LoRAs on the embedded model + a switch over built-in task prompts."""
    import json

    import torch
    from peft import LoraConfig, get_peft_model

    from forgetless.continual.config import ContinualConfig, ContinualTask
    from forgetless.continual.run_dir import RunDir
    from forgetless.continual.switch_stage import add_task_to_switch, new_switch, save_switch
    from forgetless.data.tasks import build_task
    from forgetless.models.load import load_model

    cfg = ContinualConfig(tasks=[ContinualTask(t, builtin=t) for t in tasks], output=str(folder), abstain_keep=0.95)
    switch, calibration, run = new_switch(cfg), {}, RunDir(folder)
    for seed, task in enumerate(tasks):
        base, _, info = load_model(None)
        torch.manual_seed(seed)
        lora = LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", init_lora_weights=False)
        adapter = run.adapter_home(task)
        get_peft_model(base, lora).save_pretrained(adapter)
        (adapter / "forgetless.json").write_text(json.dumps({"base_fingerprint": info.fingerprint}))
        prompts = [r["prompt"] for r in build_task(task, seed=0, n_train=300, n_eval=1)[0]]
        calibration[task] = prompts[:20]
        add_task_to_switch(switch, task, prompts[20:], run.recorded_adapter(task), calibration, cfg.abstain_keep)
    save_switch(switch, folder, calibration)
    run.manifest_path.write_text(json.dumps({"model": None, "tasks": [t.to_dict() for t in cfg.tasks]}))
    return folder


class OldMiniLM:
    """The MiniLM switch encoder as it was before 2026-11-30, for side-by-side timing and decision checks:
    batches in the prompts' order, tokenized batch by batch (padded to the longest in the batch), under
    `torch.no_grad()`, running BERT's pooler too. A separate copy of the model (the new one drops the pooler)."""

    name, dim = "minilm", 384

    def __init__(self):
        from transformers import AutoModel, AutoTokenizer

        from forgetless.adapters.switch.encoder import _quiet_hf, minilm_dir

        with _quiet_hf():
            self.tokenizer = AutoTokenizer.from_pretrained(str(minilm_dir()))
            self.model = AutoModel.from_pretrained(str(minilm_dir())).eval().requires_grad_(False)

    def encode(self, prompts: list[str], batch_size: int = 64):
        import torch

        from forgetless.adapters.switch.encoder import mean_pool

        chunks = []
        with torch.no_grad():
            for start in range(0, len(prompts), batch_size):
                batch = list(prompts[start : start + batch_size])
                enc = self.tokenizer(batch, padding=True, truncation=True, max_length=256, return_tensors="pt")
                hidden = self.model(**enc).last_hidden_state
                pooled = mean_pool(hidden.float(), enc["attention_mask"])
                chunks.append(torch.nn.functional.normalize(pooled, dim=-1))
        return torch.cat(chunks) if chunks else torch.zeros((0, self.dim))


def benchmark_prompts(switch, n: int) -> list[str]:
    """N prompts, round-robin over the tasks' held-out eval items and plain chat (base) requests."""
    from forgetless.continual.general import CHAT_PROMPTS
    from forgetless.data.tasks import BUILTIN_TASKS, build_task

    pools = []
    for task in switch.task_names:
        source = task if task in BUILTIN_TASKS else "plural"
        pools.append([r["prompt"] for r in build_task(source, seed=1, n_train=1, n_eval=max(4, n))[1]])
    pools.append(list(CHAT_PROMPTS))
    cycle = itertools.cycle(range(len(pools)))
    picks: list[str] = []
    counters = [0] * len(pools)
    for k in itertools.islice(cycle, n):
        picks.append(pools[k][counters[k] % len(pools[k])])
        counters[k] += 1
    return picks


def one_by_one(routed, conversations, prompts, max_new_tokens: int) -> tuple[list[str], float]:
    from forgetless.adapters.mixed import generate_mixed
    from forgetless.engine.sampling import SamplingConfig

    sampling, answers = SamplingConfig(max_new_tokens=max_new_tokens), []
    start = time.perf_counter()
    for conversation, prompt in zip(conversations, prompts, strict=True):
        route = routed.switch.route([prompt])[0]
        name = None if route.adapter is None else route.task
        answers += generate_mixed(routed.model, routed.tokenizer, [conversation], [name], sampling, batch_size=1)
    return answers, time.perf_counter() - start


def switch_cost_ms(switch, prompts: list[str]) -> tuple[float, float, float, float]:
    """Milliseconds per prompt of the switch alone, one batched call and one call per prompt: wall clock,
    then CPU time of this process (what the switch costs where it has the core to itself)."""
    inner = getattr(switch.encoder, "inner", None)
    if inner is not None:  # time the real encoder, not the cache
        switch.encoder = inner
    switch.route(prompts[:2])
    clocks = [(time.perf_counter(), time.process_time())]
    switch.route(prompts)
    clocks.append((time.perf_counter(), time.process_time()))
    for prompt in prompts:
        switch.route([prompt])
    clocks.append((time.perf_counter(), time.process_time()))
    (w0, c0), (w1, c1), (w2, c2) = clocks
    return tuple(1000 * d / len(prompts) for d in (w1 - w0, w2 - w1, c1 - c0, c2 - c1))


def old_vs_new(switch, prompts: list[str], repeats: int) -> dict[str, tuple[float, ...]]:
    """Median `switch_cost_ms` of the old MiniLM encoder and the new one, alternated `repeats` times on the
    same prompts; also checks that both route every prompt the same way."""
    import statistics

    new = getattr(switch.encoder, "inner", switch.encoder)
    arms = {"old": OldMiniLM(), "new": new} if new.name == "minilm" else {"new": new}
    times: dict[str, list[tuple[float, ...]]] = {arm: [] for arm in arms}
    for _ in range(repeats):
        for arm, encoder in arms.items():
            switch.encoder = encoder
            times[arm].append(switch_cost_ms(switch, prompts))
    routes = {}
    for arm, encoder in arms.items():
        switch.encoder = encoder
        routes[arm] = [(r.task, r.abstained) for r in switch.route(prompts)]
    same = sum(a == b for a, b in zip(routes["new"], routes.get("old", routes["new"]), strict=True))
    print(f"old and new encoder route identically: {same}/{len(prompts)} prompts")
    return {arm: tuple(statistics.median(col) for col in zip(*ts, strict=True)) for arm, ts in times.items()}


def print_switch_cost(switch, prompts: list[str], repeats: int) -> None:
    import os

    import torch

    load = os.getloadavg()[0]
    costs = old_vs_new(switch, prompts, repeats)
    threads, after = torch.get_num_threads(), os.getloadavg()[0]
    print(f"switch cost, {len(prompts)} prompts, {switch.switch_type} switch, torch threads {threads}, load average")
    print(f"{load:.2f} -> {after:.2f}, median of {repeats} (target <= 5 ms/prompt):")
    print("| encoder | batched ms/prompt (wall / CPU) | one at a time ms/prompt (wall / CPU) |\n|---|---|---|")
    for arm, (batched, single, batched_cpu, single_cpu) in costs.items():
        print(f"| {arm} | {batched:.2f} / {batched_cpu:.2f} | {single:.2f} / {single_cpu:.2f} |")
    if "old" in costs:
        ratios = [o / n for o, n in zip(costs["old"], costs["new"], strict=True)]
        print(f"old/new: {ratios[0]:.2f}x batched, {ratios[1]:.2f}x one at a time (wall clock)")


def switch_only(run: Path, n: int, repeats: int) -> None:
    """Only the switch's cost: no LLM, no adapters loaded."""
    from forgetless.continual.switch_stage import load_switch

    switch, _ = load_switch(run)
    print(f"run: {run}")
    print_switch_cost(switch, benchmark_prompts(switch, n), repeats)


def generation(run: Path, args: argparse.Namespace) -> None:
    """Arms (a) and (b), then the switch's own cost."""
    import torch

    from forgetless.continual.route import RoutedModel
    from forgetless.data.chat import prompt_messages

    routed = RoutedModel.load(run)
    prompts = benchmark_prompts(routed.switch, args.n)
    conversations = [prompt_messages(p) for p in prompts]
    routed.answer(conversations[:2], max_new_tokens=4)  # warm-up

    start = time.perf_counter()
    rows = routed.answer(conversations, max_new_tokens=args.max_new_tokens, batch_size=args.batch_size)
    mixed_s = time.perf_counter() - start
    single_answers, single_s = one_by_one(routed, conversations, prompts, args.max_new_tokens)

    routes = {}
    for row in rows:
        routes[row["task"]] = routes.get(row["task"], 0) + 1
    same = sum(r["answer"] == a for r, a in zip(rows, single_answers, strict=True))
    kind = routed.switch.switch_type
    print(f"run: {run}   switch: {kind}   torch threads: {torch.get_num_threads()}   routes: {routes}")
    print(f"N={args.n} prompts, max_new_tokens={args.max_new_tokens}, batch size {args.batch_size}")
    print("| arm | seconds | prompts/s |\n|---|---|---|")
    print(f"| (a) route all + mixed-adapter batches | {mixed_s:.2f} | {args.n / mixed_s:.2f} |")
    print(f"| (b) route + generate one prompt at a time | {single_s:.2f} | {args.n / single_s:.2f} |")
    print(f"speed-up (a)/(b): {single_s / mixed_s:.2f}x (target >= 2x); identical answers: {same}/{args.n}")
    print_switch_cost(routed.switch, prompts, args.repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=None, help="continual run directory (switch + adapters)")
    parser.add_argument("--n", type=int, default=64, help="number of prompts")
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--switch-only", action="store_true", help="only the switch's cost, old vs new encoder")
    parser.add_argument("--repeats", type=int, default=3, help="switch cost: alternate old/new this many times")
    args = parser.parse_args()

    from forgetless.continual.run_dir import RunDir

    run = args.run or (DEFAULT_RUN if RunDir(DEFAULT_RUN).switch_manifest_path.is_file() else None)
    with tempfile.TemporaryDirectory(prefix="routing-bench-") as temp:
        if run is None:
            run = stand_in_run(Path(temp))
            print("no run given: stand-in run with random LoRAs (rows never stop early)")
        if args.switch_only:
            switch_only(run, args.n, args.repeats)
        else:
            generation(run, args)


if __name__ == "__main__":
    main()
