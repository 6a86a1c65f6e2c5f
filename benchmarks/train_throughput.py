"""Training throughput: forgetless LoRA vs a plain PEFT + Trainer recipe, side by side in one run.

    .venv/bin/python benchmarks/train_throughput.py [--steps 12] [--batch-size 8] [--records 96] [--workload both]

Same model (embedded SmolLM2-135M-Instruct), same real QA data, same LoRA (r=16 on all linear layers), same
batch size and steps. Two workloads: `sentence` (countryinfo capital/currency/region questions answered in a
sentence, ~50 tokens) and `short` (the same questions answered with the bare object, as the injection and
`learn` data are: ~35 tokens, so per-step overheads weigh more).
- forgetless: left padding + logits only at label positions + response-only loss + bf16 autocast
  (where the CPU supports bf16; fp32 otherwise) + eager attention on the CPU for records <= 512 tokens,
  via `forgetless.train.setup` and `forgetless.models.runtime.training_attention`, as `forgetless train`.
- plain: right padding, labels = input ids (full-sequence loss), full logits, fp32 (a stock recipe).
- forgetless-fp32: ours without bf16 (label-only logits, and `BitsDropout` masks on the CPU).
- forgetless-uncut: ours without the CPU cuts of 2026-11-30 (torch's `nn.Dropout` masks instead of
  `BitsDropout`, frozen weights re-cast by autocast on every forward, peft's input up-casts kept), so the
  cuts are measured side by side with the path as it was (`--arms` picks arms; these four by default).
- forgetless-floor (only when asked for: `--arms forgetless,plain,forgetless-floor`): the forgetless path
  with LoRA on one linear (layer 0's q_proj) instead of all 210, so the backward still runs through the
  whole frozen base: what a step costs without the adapters' branches, the floor they sit on.
Tokens/s counts real (non-padding) tokens of the timed steps (the first step is warm-up, not timed).
The bf16 limit is measured in the same run, on this machine: a 2048^3 bf16 matmul's FLOP/s (torch's
threads) divided by the training FLOPs per token (4 x the base's linear weights, LM head included:
forward, and the backward's input gradients through the frozen weights; attention and LoRA not counted),
so "% of limit" means the same on any CPU (the figures before 2026-12-01 assumed ~750 tok/s, the host of
then; the host of 2026-12-01, 2 cores of an AMD EPYC with avx512_bf16, measures ~1,700).
Runs alternate (A, B, C, A, B, C) so machine noise hits all alike; the best round of each is reported.

`--paired` interleaves the arms step by step instead: every arm trains in its own process, and a
turnstile lets one arm run one step (data loading, forward, backward, optimizer) at a time, in turn
(A1, B1, C1, A2, B2, ...), the others waiting asleep. Each step is timed alone, so a slow spell of this
shared machine (step times swing 1.6x over tens of seconds) hits every arm's steps alike instead of one
arm's whole run; the first two steps of each arm are warm-up. (Threads in one process were tried first:
elementwise ops ran up to 3x slower off the main thread.)
"""

from __future__ import annotations

import argparse
import contextlib
import time

import torch
from transformers import DataCollatorForSeq2Seq, Trainer, TrainerCallback, TrainingArguments

from forgetless.adapters.registry import build_method
from forgetless.data.records import Record
from forgetless.knowledge.countries import country_facts
from forgetless.models.load import load_model
from forgetless.models.runtime import resolve_precision
from forgetless.train.config import TrainConfig
from forgetless.train.setup import build_dataset, build_trainer

ARMS = ("forgetless", "plain", "forgetless-fp32", "forgetless-uncut", "forgetless-floor")
DEFAULT_ARMS = ARMS[:4]


class StepTimer(TrainerCallback):
    """Wall time from the end of the first step to the end of the last."""

    def __init__(self):
        self.start = self.end = 0.0

    def on_step_end(self, args, state, control, **kwargs):
        now = time.perf_counter()
        if state.global_step == 1:
            self.start = now
        self.end = now


def qa_records(n: int, workload: str = "sentence") -> list[Record]:
    facts = [f for f in country_facts() if f.relation in ("capital", "currency", "region")][:n]
    answer = (lambda f: f"The {f.relation} of {f.subject} is {f.object}.") if workload == "sentence" else None
    return [
        Record([{"role": "user", "content": f.question}, {"role": "assistant", "content": (answer or _bare)(f)}])
        for f in facts
    ]


def _bare(fact) -> str:
    return fact.object


def run(kind: str, records, args) -> float:
    trainer, timer, tokens_per_step = _build(kind, records, args)
    trainer.train()
    return tokens_per_step * (args.steps - 1) / (timer.end - timer.start)


@contextlib.contextmanager
def _no_bits_dropout():
    """While a trainer is built: torch's `nn.Dropout` kept (no `BitsDropout` swap)."""
    import forgetless.train.dropout as dropout

    saved = dropout.training_dropout
    dropout.training_dropout = lambda model, device: 0
    try:
        yield
    finally:
        dropout.training_dropout = saved


def _build(kind: str, records, args):
    """(trainer, its StepTimer, real tokens per step) for one arm; the uncut arm keeps its path for good."""
    model, tokenizer, _ = load_model(None, device="cpu")
    cfg = TrainConfig(data="-", output="-", max_steps=args.steps, batch_size=args.batch_size, lr=1e-4)
    cfg.save_steps, cfg.logging_steps = 10_000, 10_000
    if kind == "forgetless-floor":
        cfg.target_modules = ["layers.0.self_attn.q_proj"]
    dataset = build_dataset(tokenizer, records, cfg)
    method = build_method(cfg)  # the LoRA `forgetless train` builds (cfg.method "lora")
    peft_model = method.wrap(model)
    timer = StepTimer()
    if kind == "plain":
        trainer = _plain_trainer(peft_model, tokenizer, dataset, args, cfg.seed)
    else:
        precision = "fp32" if kind == "forgetless-fp32" else resolve_precision("auto", "cpu")
        uncut = kind == "forgetless-uncut"  # the path before the CPU cuts, for this trainer only
        with _no_bits_dropout() if uncut else contextlib.nullcontext():
            trainer = build_trainer(peft_model, tokenizer, dataset, cfg, f"{args.tmp}/{kind}", precision, method)
        if uncut:
            trainer._fast_paths = contextlib.ExitStack  # no bf16-held linears, up-casts kept, scaling unfolded
        trainer.args.save_strategy = "no"
    trainer.add_callback(timer)
    return trainer, timer, sum(dataset["length"]) / len(dataset) * args.batch_size


class Turnstile:
    """Lets the arms' trainer processes run one step each, in turn (shared across processes)."""

    WARMUP = 2

    def __init__(self, context, arms: int):
        self.cond = context.Condition()
        self.turn = context.Value("i", 0, lock=False)
        self.done = context.Array("b", arms, lock=False)

    def wait(self, arm: int) -> float:
        with self.cond:
            self.cond.wait_for(lambda: self.turn.value == arm)
        return time.perf_counter()

    def hand_over(self, arm: int, finished: bool = False) -> None:
        with self.cond:
            self.done[arm] = self.done[arm] or finished
            if self.turn.value == arm and not all(self.done):
                turn = (arm + 1) % len(self.done)
                while self.done[turn]:
                    turn = (turn + 1) % len(self.done)
                self.turn.value = turn
            self.cond.notify_all()


class TakeTurns(TrainerCallback):
    """One arm's side of the turnstile: wait for the turn, run a step, time it, hand over."""

    def __init__(self, turnstile: Turnstile, arm: int):
        self.turnstile, self.arm, self.times = turnstile, arm, []

    def on_train_begin(self, args, state, control, **kwargs):
        self.start = self.turnstile.wait(self.arm)

    def on_step_end(self, args, state, control, **kwargs):
        self.times.append(time.perf_counter() - self.start)
        self.turnstile.hand_over(self.arm)
        self.start = self.turnstile.wait(self.arm)

    def on_train_end(self, args, state, control, **kwargs):
        self.turnstile.hand_over(self.arm, finished=True)


def _paired_arm(kind: str, arm: int, turnstile: Turnstile, records, args, results) -> None:
    try:
        trainer, _, tokens_per_step = _build(kind, records, args)
        turns = TakeTurns(turnstile, arm)
        trainer.add_callback(turns)
        trainer.train()
        steps = turns.times[Turnstile.WARMUP :]
        results.put((kind, tokens_per_step * len(steps) / sum(steps)))
    except BaseException as exc:
        turnstile.hand_over(arm, finished=True)
        results.put((kind, repr(exc)))


def run_paired(arms: list[str], records, args) -> dict[str, float]:
    """Tokens/s of each arm, its steps interleaved with the other arms' (see the module docstring)."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    turnstile, results = Turnstile(context, len(arms)), context.Queue()
    workers = [
        context.Process(target=_paired_arm, args=(kind, arm, turnstile, records, args, results))
        for arm, kind in enumerate(arms)
    ]
    for worker in workers:
        worker.start()
    measured = dict(results.get() for _ in workers)
    for worker in workers:
        worker.join()
    failed = {kind: value for kind, value in measured.items() if isinstance(value, str)}
    if failed:
        raise RuntimeError(f"paired run failed: {failed}")
    return {kind: measured[kind] for kind in arms}


def training_flops_per_token(model) -> int:
    """4 x the weights of the model's `nn.Linear`s (LM head included, adapters excluded): a forward's 2 FLOPs
    per weight and the backward's 2 for the input gradient (the base is frozen: no weight gradients)."""
    linears = [m for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and "lora_" not in n]
    return 4 * sum(m.weight.numel() for m in linears)


def bf16_matmul_flops(size: int = 2048, seconds: float = 1.5) -> float:
    """FLOP/s of a size^3 bf16 matmul on the CPU with torch's current threads (best of the timed calls)."""
    a, b = torch.randn(size, size, dtype=torch.bfloat16), torch.randn(size, size, dtype=torch.bfloat16)
    a @ b
    best, stop = float("inf"), time.perf_counter() + seconds
    while time.perf_counter() < stop:
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best


def bf16_limit() -> tuple[float, float]:
    """(bf16 matmul GFLOP/s, tokens/s limit) for training the embedded model on this machine."""
    model, _, _ = load_model(None, device="cpu")
    flops = bf16_matmul_flops()
    return flops / 1e9, flops / training_flops_per_token(model)


def _plain_trainer(model, tokenizer, dataset, args, seed: int) -> Trainer:
    plain = dataset.map(lambda row: {"labels": row["input_ids"]}).remove_columns(["length", "sample_type"])
    tokenizer.padding_side = "right"
    training_args = TrainingArguments(
        output_dir=args.tmp,
        max_steps=args.steps,
        per_device_train_batch_size=args.batch_size,
        learning_rate=1e-4,
        seed=seed,  # the same batches, in the same order, as the forgetless arms
        use_cpu=True,
        report_to=[],
        save_strategy="no",
        logging_steps=10_000,
        disable_tqdm=True,
    )
    collator = DataCollatorForSeq2Seq(tokenizer, padding=True)
    return Trainer(model=model, args=training_args, train_dataset=plain, data_collator=collator)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--records", type=int, default=96)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--workload", choices=("sentence", "short", "both"), default="both")
    parser.add_argument("--tmp", default="/tmp/forgetless-bench")
    parser.add_argument("--arms", default=",".join(DEFAULT_ARMS), help=f"comma-separated, of {', '.join(ARMS)}")
    parser.add_argument("--paired", action="store_true", help="interleave the arms step by step in one process")
    args = parser.parse_args()
    workloads = ("sentence", "short") if args.workload == "both" else (args.workload,)
    unknown = sorted(set(args.arms.split(",")) - set(ARMS))
    if unknown:
        parser.error(f"--arms: unknown arm {', '.join(unknown)}; pick from {', '.join(ARMS)}")
    arms = [arm for arm in ARMS if arm in args.arms.split(",")]
    if "forgetless" not in arms or "plain" not in arms:
        parser.error(f"--arms must include forgetless and plain, got {args.arms!r}")
    mode = "paired steps" if args.paired else "arms one after another"
    print(f"precision on this machine: {resolve_precision('auto', 'cpu')}, threads {torch.get_num_threads()}, {mode}")
    gflops, limit = bf16_limit()
    print(f"bf16 limit: {gflops:.0f} GFLOP/s (2048^3 matmul) -> {limit:.0f} tok/s; 50% = {limit / 2:.0f} tok/s")
    for workload in workloads:
        records = qa_records(args.records, workload)
        best: dict[str, float] = {}
        for round_index in range(args.rounds):
            tps = run_paired(arms, records, args) if args.paired else {kind: run(kind, records, args) for kind in arms}
            for kind, value in tps.items():
                best[kind] = max(best.get(kind, 0.0), value)
            ratio = tps["forgetless"] / tps["plain"]
            print(f"{workload} round {round_index + 1}: " + ", ".join(f"{k} {v:.1f}" for k, v in tps.items()), end="")
            uncut = tps.get("forgetless-uncut")
            uncut = f", forgetless/uncut {tps['forgetless'] / uncut:.2f}x" if uncut else ""
            print(f" tok/s; forgetless/plain {ratio:.2f}x{uncut}", flush=True)
        print(f"\n{workload}: | recipe | tokens/s (best round) | vs plain | of the bf16 limit |\n|---|---|---|---|")
        for kind, value in best.items():
            print(f"| {kind} | {value:.0f} | {value / best['plain']:.2f}x | {value / limit:.0%} |")


if __name__ == "__main__":
    main()
