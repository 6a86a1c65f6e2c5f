"""Scoring a continual stage: every task's eval prompts, each answered by the adapter it is routed to.

    ctx = EvalContext.build(cfg, data, pool)          # also scores the zero-shot base: row 0 of R
    row = ctx.score_row(lambda task: ["plural"] * n)  # one adapter name (or None = base) per eval prompt
    summary = method_summary(rows, stages)            # R, aa, bwt, fwt, forgetting

R[i][j] is the score (the task's metric, in [0, 1]) on task j after training through task i; row 0 is
the base model alone (zero-shot). With tasks numbered 1..T (see `forgetless.eval.metrics`):

    AA         = (1/T)     Σ_{j=1..T}   R[T][j]
    BWT        = 1/(T−1)   Σ_{j=1..T−1} (R[T][j] − R[j][j])          (< 0: forgetting)
    FWT        = 1/(T−1)   Σ_{j=2..T}   (R[j−1][j] − R[0][j])        (against the zero-shot base)
    forgetting = 1/(T−1)   Σ_{j=1..T−1} (max_{i=j..T−1} R[i][j] − R[T][j])   (Chaudhry et al. 2018)

Row i scores the tasks seen so far and the next one (FWT needs R[j−1][j]); the other cells (i < j − 1)
enter no formula and stay null unless `eval_all_tasks: true` fills the whole matrix. Row 0 is complete.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from forgetless.continual.config import ContinualConfig
from forgetless.continual.data import TaskData
from forgetless.continual.general import GeneralSet, ood_prompts
from forgetless.eval.metrics import cl_summary, score

MAX_AUTO_NEW_TOKENS = 128

Names = list[str | None]


@dataclass
class EvalContext:
    """What every stage of every method is scored with (built once per run)."""

    cfg: ContinualConfig
    data: dict[str, TaskData]
    pool: Any
    general: GeneralSet
    ood: list[str]
    max_new: dict[str, int]
    base_row: list[float] = field(default_factory=list)
    base_general: dict[str, Any] = field(default_factory=dict)
    encoder: Any = None  # the switch's prompt encoder, built on first use and shared (with its cache)

    @classmethod
    def build(cls, cfg: ContinualConfig, data: dict[str, TaskData], pool: Any) -> EvalContext:
        """Pick the general set and foreign prompts, and score the base model (row 0 of every R)."""
        max_new = {name: max_new_tokens(cfg, td, pool.tokenizer) for name, td in data.items()}
        ctx = cls(cfg, data, pool, GeneralSet.build(cfg, pool), ood_prompts(cfg), max_new)
        ctx.base_row = ctx.score_row(lambda task: [None] * len(data[task].eval))
        ctx.base_general = ctx.general.evaluate(pool, base_route)
        return ctx

    @property
    def tasks(self) -> list[str]:
        return self.cfg.task_names

    def switch_encoder(self) -> Any:
        """The switch's encoder (MiniLM by default) with a prompt cache, shared by every switch of the run."""
        if self.encoder is None:
            from forgetless.adapters.switch import make_encoder
            from forgetless.continual.switch_stage import CachedEncoder

            self.encoder = CachedEncoder(make_encoder(self.cfg.switch_encoder))
        return self.encoder

    def score_task(self, task: str, names: Names) -> float:
        """The task's metric over its eval prompts, prompt i answered with adapter names[i]."""
        td = self.data[task]
        answers = self.pool.generate(td.eval_conversations, names, self.max_new[task])
        return score(td.task.metric, answers, td.eval_references, sources=td.eval_prompts)

    def score_row(self, names_for: Callable[[str], Names], stage: int | None = None) -> list[float | None]:
        """One row of R: each task scored with the adapter names `names_for(task)` picks.

        After `stage` (1-based) only the tasks seen so far and the next one are scored (None for the rest:
        no metric reads them) unless `eval_all_tasks` is set; `stage=None` scores every task.
        """
        limit = len(self.tasks) if stage is None or self.cfg.eval_all_tasks else stage + 1
        return [self.score_task(t, names_for(t)) if j < limit else None for j, t in enumerate(self.tasks)]

    def fixed(self, name: str | None) -> Callable[[str], Names]:
        """Every prompt of every task on one adapter (a baseline's model)."""
        return lambda task: [name] * len(self.data[task].eval)


def base_route(prompts: list[str]) -> Names:
    return [None] * len(prompts)


def fixed_route(name: str | None) -> Callable[[list[str]], Names]:
    return lambda prompts: [name] * len(prompts)


def max_new_tokens(cfg: ContinualConfig, td: TaskData, tokenizer: Any) -> int:
    """The configured budget, or (None) the task's longest reference in tokens + a margin of 25% + 4."""
    if cfg.max_new_tokens is not None:
        return cfg.max_new_tokens
    longest = max(len(tokenizer(r, add_special_tokens=False)["input_ids"]) for r in td.eval_references)
    return min(MAX_AUTO_NEW_TOKENS, int(longest * 1.25) + 4)


def method_summary(rows: list[list[float]], stages: list[dict], num_tasks: int, **extra: Any) -> dict[str, Any]:
    """R and its continual-learning metrics (null until every stage is done), plus per-stage details."""
    complete = len(rows) == num_tasks + 1
    nan = float("nan")  # cells never scored (far-future tasks) are read by no formula
    metrics = cl_summary([[nan if v is None else v for v in row] for row in rows]) if complete else {}
    return {
        "R": rows,
        "aa": metrics.get("average_accuracy"),
        "bwt": metrics.get("backward_transfer"),
        "fwt": metrics.get("forward_transfer"),
        "forgetting": metrics.get("forgetting"),
        "complete": complete,
        "stages": stages,
        **extra,
    }
