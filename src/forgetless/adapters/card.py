"""The model card (`README.md`, the Hub's format) of every adapter forgetless writes.

    from forgetless.adapters.card import write_model_card
    write_model_card("runs/demo")                      # after training: base, method, data hash, recipe
    write_model_card("runs/inj/adapter", audit=result) # after inject/learn: what it taught, what it cost

The YAML front matter names the portable base (`base_model`, a hub id), `library_name: peft` and tags, so
the folder can be pushed to the Hub as it is. The body is built from the adapter's `forgetless.json`
(and the audit's results, with their intervals); peft's own placeholder card is replaced.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from forgetless.utils.fileio import write_text_atomic

CARD = "README.md"


def model_card(manifest: dict[str, Any], base: str, audit: dict[str, Any] | None = None) -> str:
    """The card's Markdown: front matter, training summary, how to load, the audit if given."""
    config = manifest.get("config", {})
    method = manifest.get("method", "lora")
    lines = [
        "---",
        f"base_model: {base}",
        "library_name: peft",
        "pipeline_tag: text-generation",
        "tags:",
        f"- base_model:adapter:{base}",
        f"- {method}",
        "- forgetless",
        "---",
        "",
        f"# A {method} adapter of {base}, trained with forgetless {manifest.get('forgetless_version', '')}",
        "",
        "## Training",
        "",
        f"- data: `{Path(str(manifest.get('data', ''))).name}` (sha256 `{manifest.get('data_sha256', '?')}`), "
        f"{manifest.get('metrics', {}).get('records', '?')} records",
        f"- {method} rank {config.get('rank')}, alpha {config.get('alpha')}, targets {config.get('target_modules')}, "
        f"lr {config.get('lr')}, epochs {config.get('epochs')}, KL to the base on anchors {config.get('anchor_kl', 0)}",
        f"- precision {manifest.get('precision')}, {manifest.get('metrics', {}).get('train_seconds', '?')} s; "
        "every option is in `forgetless.json`",
        "",
        "## Use",
        "",
        "```python",
        "from peft import AutoPeftModelForCausalLM",
        'model = AutoPeftModelForCausalLM.from_pretrained("PATH/TO/THIS/FOLDER")',
        "```",
        "",
        "or `forgetless generate --adapter PATH --prompt ...` (checks that the base fits first).",
    ]
    return "\n".join(lines + (_audit_lines(audit) if audit else [])) + "\n"


def _audit_lines(result: dict[str, Any]) -> list[str]:
    """What the adapter taught and what it cost, with exact 95% intervals where the audit has them."""
    lines = ["", f"## Audit ({result.get('recipe', 'forgetless')} recipe)", ""]
    for key, label in (
        ("reliability", "reliability (few-shot P_correct)"),
        ("reliability_zero_shot", "zero-shot reliability"),
        ("generalization", "held-out phrasings"),
        ("highly_known_kept", "HighlyKnown facts kept (never trained)"),
    ):
        if isinstance(result.get(key), (int, float)):
            interval = result.get(f"{key}_ci95")
            suffix = f" [{interval[0]:.2f}, {interval[1]:.2f}]" if interval else ""
            lines.append(f"- {label}: {result[key]:.2f}{suffix}")
    if result.get("mmlu_before") is not None and result.get("mmlu_after") is not None:
        stderr = result.get("mmlu_delta_stderr")
        spread = f" (± {stderr:.3f} paired s.e.)" if stderr is not None else ""
        lines.append(f"- MMLU: {result['mmlu_before']:.3f} -> {result['mmlu_after']:.3f}{spread}")
    alone = result.get("unscoped")
    if result.get("scope") and alone:
        lines += [
            "",
            "These numbers hold with the adapter's scope (`scope.json`: it answers questions that name a taught "
            "subject; the base answers the rest), as `forgetless generate` and `forgetless serve` apply it. Used "
            f"on every prompt (plain PEFT, vLLM): reliability {alone['reliability']:.2f}, HighlyKnown facts kept "
            f"{alone['highly_known_kept']:.2f}.",
        ]
    return [*lines, "", "Full audit: `results.json` and `report.md` of the run that wrote this adapter."]


def write_model_card(directory: str | Path, audit: dict[str, Any] | None = None) -> Path:
    """(Re)write `directory/README.md` from its forgetless.json and adapter_config.json."""
    directory = Path(directory)
    manifest = json.loads((directory / "forgetless.json").read_text())
    config = json.loads((directory / "adapter_config.json").read_text())
    base = manifest.get("base_model_hub_id") or config.get("base_model_name_or_path") or manifest.get("base_model")
    return write_text_atomic(directory / CARD, model_card(manifest, str(base), audit))
