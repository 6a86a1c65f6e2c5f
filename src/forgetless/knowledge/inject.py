"""Knowledge injection (Pletenev et al., 2025): teach n Unknown facts with a LoRA, then audit the cost.

    forgetless inject --facts facts.jsonl --unknown 50 --mixture known --k 1 --output runs/inj

1. Probe every fact on the base (cached) and sample n **Unknown** facts with a seed (the official code
   took the first n rows).
2. Build the training set: the unknown facts plus, per unknown fact, k HighlyKnown facts (`known`) or
   k paraphrases of its question (`paraphrase`), k in {0, 1, 10}.
3. Train with the paper's defaults: LoRA rank 1, alpha 2, rsLoRA, dropout 0.1 on gate/up/down_proj,
   lr 1e-3, 10 epochs; system "Answer the following question.", user "Question: q", assistant
   "Answer: a", where `a` is the fact's object exactly as few-shot exemplars show it (the official code
   trained on raw aliases but demonstrated normalized ones). Loss on the answer only (ours) or on the
   whole sequence (the paper's, `loss_on: all`). `method: loramoe` works too.
4. Audit (see `forgetless.knowledge.audit`): reliability on the trained facts under few-shot prompts
   (mean P_correct and the share always correct), category transitions of all facts, answer explosion,
   refusals, the MMLU delta, and the loss on general text.
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from forgetless.errors import ConfigError
from forgetless.knowledge.facts import Fact, paraphrases_for, question_for
from forgetless.knowledge.recipe import check_recipe, forgetless_train_args
from forgetless.knowledge.slick import SYSTEM_PROMPT
from forgetless.train.args import HoldsTrainArgs, TrainArgs
from forgetless.train.config import TrainConfig

MIXTURES = ("none", "known", "paraphrase")


def paper_train_args() -> TrainArgs:
    """The paper's training recipe: LoRA rank 1, alpha 2, rsLoRA, dropout 0.1 on gate/up/down_proj, lr 1e-3,
    10 epochs (the rest are TrainArgs defaults)."""
    return TrainArgs(
        rank=1,
        alpha=2.0,
        rslora=True,
        dropout=0.1,
        target_modules=["gate_proj", "up_proj", "down_proj"],
        lr=1e-3,
        epochs=10.0,
    )


@dataclass
class InjectConfig(HoldsTrainArgs):
    """One injection run. Training defaults are the recipe's; `TRAIN_OPTIONS` are its flat training options."""

    TRAIN_OPTIONS: ClassVar[dict[str, Any]] = {
        "method": str,
        "rank": int,
        "alpha": float,
        "rslora": bool,
        "dropout": float,
        "target_modules": list[str],
        "lr": float,
        "epochs": float,
        "batch_size": int,
        "loss_on": str,
        "anchor_kl": float,
    }

    facts: str = ""
    output: str = ""
    unknown: int = 10
    mixture: str = "none"  # none | known (k HighlyKnown per unknown) | paraphrase (k paraphrases)
    k: int = 0
    recipe: str = "forgetless"  # forgetless (phrasings, anchors, gate) | paper (Pletenev et al., as the sweep ran)
    seed: int = 0  # of the fact sample, the mixture, the probes and training
    model: str | None = None
    train: TrainArgs = None  # type: ignore[assignment]  # None: the recipe's (paper_train_args, forgetless_train_args)
    exemplar_sets: int = 4
    shots: int = 4
    samples: int = 0
    mmlu: int = 285
    mmlu_shots: int = 5
    general: int = 64
    audit_facts: int = 0  # re-probe after training: the trained facts + this many others (seeded); 0 = all
    overwrite: bool = False

    def __post_init__(self) -> None:
        if self.train is None:
            self.train = forgetless_train_args() if self.recipe == "forgetless" else paper_train_args()

    @classmethod
    def from_options(cls, **options: Any) -> InjectConfig:
        """The config from flat options: training options given override the recipe's defaults."""
        train = {name: options.pop(name) for name in list(options) if name in cls.TRAIN_OPTIONS}
        cfg = cls(**options)
        cfg.train = dataclasses.replace(cfg.train, **train)
        return cfg

    def validate(self) -> InjectConfig:
        check_recipe(self.recipe)
        if not self.facts or not self.output:
            raise ConfigError("--facts FILE and --output DIR are required")
        if self.unknown < 1:
            raise ConfigError(f"--unknown must be >= 1, got {self.unknown}")
        if self.mixture not in MIXTURES:
            raise ConfigError(f"--mixture {self.mixture!r} is not one of {', '.join(MIXTURES)}")
        if self.k < 0 or (self.mixture != "none" and self.k == 0):
            raise ConfigError(f"--k must be >= 1 with --mixture {self.mixture} (and >= 0 always), got {self.k}")
        if self.audit_facts < 0:
            raise ConfigError(f"--audit-facts must be >= 0 (0 = all facts), got {self.audit_facts}")
        TrainConfig.from_args(self.train, data=self.facts, output=self.output, model=self.model).validate()
        return self


def audit_subset(facts: list[Fact], chosen: list[Fact], size: int, seed: int) -> list[Fact]:
    """The facts re-measured after training: all of them (size 0), or the trained ones plus `size` others
    drawn with a seed that does not depend on which facts were trained, so cells of a sweep share them."""
    if not size:
        return list(facts)
    sample = {f.id for f in random.Random(f"audit/{seed}").sample(facts, min(size, len(facts)))}
    keep = sample | {f.id for f in chosen}
    return [f for f in facts if f.id in keep]


def choose_unknown(categories: dict[str, str], facts: list[Fact], n: int, seed: int) -> list[Fact]:
    """A seeded random sample of n facts the base does not know."""
    pool = [f for f in facts if categories.get(f.id) == "Unknown"]
    if len(pool) < n:
        raise ConfigError(f"only {len(pool)} facts are Unknown to this model, fewer than --unknown {n}; lower it")
    return random.Random(f"inject/{seed}").sample(pool, n)


def training_records(
    chosen: list[Fact], facts: list[Fact], categories: dict[str, str], mixture: str, k: int, seed: int
) -> list[dict[str, str]]:
    """The unknown facts plus their mixture, in the paper's prompt format."""
    rng = random.Random(f"mix/{seed}")
    rows = [_record(question_for(f), f.object) for f in chosen]
    if mixture == "known" and k:
        known = [f for f in facts if categories.get(f.id) == "HighlyKnown"]
        if not known:
            raise ConfigError("no HighlyKnown facts to mix in; use --mixture paraphrase or none")
        for _ in chosen:
            rows += [_record(question_for(f), f.object) for f in rng.sample(known, min(k, len(known)))]
    elif mixture == "paraphrase" and k:
        for fact in chosen:
            variants = paraphrases_for(fact) or [question_for(fact)]
            rows += [_record(variants[i % len(variants)], fact.object) for i in range(k)]
    rng.shuffle(rows)
    return rows


def _record(question: str, answer: str) -> dict[str, str]:
    return {"system": SYSTEM_PROMPT, "prompt": f"Question: {question}", "response": f"Answer: {answer}"}


def reliability(probes, trained_ids: set[str]) -> dict[str, Any]:
    """Mean P_correct over the trained facts under few-shot prompts, and the share always correct."""
    trained = [p for p in probes if p.fact_id in trained_ids]
    if not trained:
        return {"reliability": 0.0, "reliability_all_correct": 0.0, "trained_facts": 0}
    return {
        "reliability": sum(p.p_correct for p in trained) / len(trained),
        "reliability_all_correct": sum(p.p_correct == 1.0 for p in trained) / len(trained),
        "trained_facts": len(trained),
    }


def train_config(cfg: InjectConfig, data: Path, output: Path) -> TrainConfig:
    """The TrainConfig of an injection run."""
    run = {"model": cfg.model, "seed": cfg.seed, "save_steps": 100_000, "logging_steps": 10, "overwrite": True}
    return TrainConfig.from_args(cfg.train, data=str(data), output=str(output), **run)
