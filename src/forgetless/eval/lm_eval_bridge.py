"""Optional lm-evaluation-harness runs on an already loaded model (adapter on or off).

    forgetless audit --adapter runs/x --facts facts.jsonl --output runs/x_audit --lm-eval-tasks mmlu,truthfulqa_mc2

lm-eval is not a dependency (`pip install lm-eval` to use this). The loaded model itself is wrapped in
lm-eval's `HFLM`, so any adapter we can load (PEFT LoRA, ours or not, and LoRAMoE) is evaluated the
same way, and "before" is the same weights with the adapter disabled. When lm-eval is missing, or a
task's data cannot be reached (no network here), the run is skipped with a one-line message and the
result says why; the rest of the audit goes on.
"""

from __future__ import annotations

from typing import Any

from forgetless.utils.console import err_console


def parse_tasks(text: str | None) -> list[str]:
    """'mmlu, truthfulqa_mc2' -> ['mmlu', 'truthfulqa_mc2']."""
    return [t.strip() for t in (text or "").split(",") if t.strip()]


def run_lm_eval(model, tokenizer, tasks: list[str], limit: int | None = None, batch_size: int = 8) -> dict[str, Any]:
    """{"results": {task: {metric: value}}} or {"skipped": reason}."""
    try:
        import lm_eval
        from lm_eval.models.huggingface import HFLM
    except ImportError:
        return _skip("lm-evaluation-harness is not installed (pip install lm-eval)")
    try:
        wrapped = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size)
        out = lm_eval.simple_evaluate(model=wrapped, tasks=tasks, limit=limit)
    except Exception as exc:  # any failure inside lm-eval (usually unreachable data) skips it
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return _skip(f"lm-eval could not run {','.join(tasks)}: {first[:200]}")
    return {"results": {task: _numbers(metrics) for task, metrics in (out or {}).get("results", {}).items()}}


def lm_eval_delta(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """Per task and metric: before, after, delta (only metrics present in both)."""
    if "results" not in before or "results" not in after:
        return {"skipped": before.get("skipped") or after.get("skipped")}
    table: dict[str, Any] = {}
    for task, metrics in after["results"].items():
        for name, value in metrics.items():
            old = before["results"].get(task, {}).get(name)
            if old is not None:
                table.setdefault(task, {})[name] = {"before": old, "after": value, "delta": value - old}
    return {"results": table}


def _numbers(metrics: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if isinstance(v, int | float) and not isinstance(v, bool)}


def _skip(reason: str) -> dict[str, Any]:
    err_console.print(f"[yellow]skipping lm-eval:[/yellow] {reason}")
    return {"skipped": reason}
