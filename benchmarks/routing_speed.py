"""Routed generation speed: one mixed-adapter batch vs routing and generating every prompt on its own.

    .venv/bin/python benchmarks/routing_speed.py                      # N=64, the experiment's run if present
    .venv/bin/python benchmarks/routing_speed.py --run experiments/results/continual_switch/work/builtin/mlp_1%
    .venv/bin/python benchmarks/routing_speed.py --run runs/cit --n 96 --max-new-tokens 32
    .venv/bin/python benchmarks/routing_speed.py --n 8 --max-new-tokens 8     # smoke

Prompts: N spread evenly over the run's tasks (their eval prompts) and the base model (plain chat requests
that belong to no task). Both arms use the same loaded model (one base + every task LoRA), greedy decoding
and the same token budget:
  (a) mixed: the switch routes the whole batch at once, then `generate_mixed` answers it in chunks of
      --batch-size, each chunk ONE generate call whose rows use different adapters (and the base);
  (b) one by one: for each prompt, route it, then generate it alone with its adapter.
Also measured: the switch's own cost per prompt (MiniLM encoding + its head: the prototype switch's
Mahalanobis distances or the mlp switch's MLP), batched and one at a time.
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


def switch_cost_ms(switch, prompts: list[str]) -> tuple[float, float]:
    """Milliseconds per prompt of the switch alone: one batched call, and one call per prompt."""
    inner = getattr(switch.encoder, "inner", None)
    if inner is not None:  # time the real encoder, not the cache
        switch.encoder = inner
    switch.route(prompts[:2])
    start = time.perf_counter()
    switch.route(prompts)
    batched = 1000 * (time.perf_counter() - start) / len(prompts)
    start = time.perf_counter()
    for prompt in prompts:
        switch.route([prompt])
    single = 1000 * (time.perf_counter() - start) / len(prompts)
    return batched, single


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=None, help="continual run directory (switch + adapters)")
    parser.add_argument("--n", type=int, default=64, help="number of prompts")
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()

    import torch

    from forgetless.continual.route import RoutedModel
    from forgetless.continual.run_dir import RunDir
    from forgetless.data.chat import prompt_messages

    run = args.run or (DEFAULT_RUN if RunDir(DEFAULT_RUN).switch_manifest_path.is_file() else None)
    temp = None
    if run is None:
        temp = tempfile.TemporaryDirectory(prefix="routing-bench-")
        run = stand_in_run(Path(temp.name))
        print("no run given: stand-in run with random LoRAs (rows never stop early)")
    routed = RoutedModel.load(run)
    prompts = benchmark_prompts(routed.switch, args.n)
    conversations = [prompt_messages(p) for p in prompts]
    routed.answer(conversations[:2], max_new_tokens=4)  # warm-up

    start = time.perf_counter()
    rows = routed.answer(conversations, max_new_tokens=args.max_new_tokens, batch_size=args.batch_size)
    mixed_s = time.perf_counter() - start
    single_answers, single_s = one_by_one(routed, conversations, prompts, args.max_new_tokens)
    batched_ms, single_ms = switch_cost_ms(routed.switch, prompts)

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
    print(f"switch cost: {batched_ms:.2f} ms/prompt batched, {single_ms:.2f} ms/prompt one at a time (target <= 5)")
    if temp is not None:
        temp.cleanup()


if __name__ == "__main__":
    main()
