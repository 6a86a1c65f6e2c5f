"""Every default a command shows has one home: a config dataclass or the library function the command calls.

A command takes its defaults from that home where it is cheap to import, else states them; either way these
tests fail when a command's default, or a default stated in its help text ("(default 3)", "lora (default)",
"(paper: 10)", ...), differs from its home. An option with a default but no home here fails too, so a new
option cannot slip in with a default of its own.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import typer

from forgetless.cli.app import app

CLI_ONLY = {"facts fictional --n"}  # the library function takes n without a default: the CLI's own choice


def _arg(function: Callable, name: str) -> Any:
    return inspect.signature(function).parameters[name].default


def homes() -> dict[str, Any]:
    """`command --flag` -> the default it must show (for every option whose default is not None/False)."""
    from forgetless.adapters.loramoe.analysis import router_usage
    from forgetless.continual.add_task import add_task
    from forgetless.continual.config import ContinualTask
    from forgetless.continual.route import RoutedModel
    from forgetless.data.tasks import write_builtin_suite
    from forgetless.demos.knowledge_audit import DemoSettings
    from forgetless.engine.generate import generate_texts
    from forgetless.engine.sampling import GENERATE_PRECISION, SamplingConfig
    from forgetless.eval.lm_eval_bridge import LmEvalOptions
    from forgetless.eval.lm_eval_tasks import write_mmlu_task
    from forgetless.knowledge.audit import AuditSettings
    from forgetless.knowledge.fictional import write_fictional_facts
    from forgetless.knowledge.slick import ProbeSettings, probe_facts
    from forgetless.serve.app import ServeConfig
    from forgetless.serve.backend import build_backend
    from forgetless.serve.server import serve_forever

    sampling, probe, audit, demo, serve = (
        SamplingConfig(),
        ProbeSettings(),
        AuditSettings(),
        DemoSettings(),
        ServeConfig(),
    )
    return {
        "generate --max-new-tokens": sampling.max_new_tokens,
        "generate --temperature": sampling.temperature,
        "generate --top-p": sampling.top_p,
        "generate --top-k": sampling.top_k,
        "generate --precision": GENERATE_PRECISION,
        "generate --batch-size": _arg(generate_texts, "batch_size"),
        "audit --lm-eval-batch-size": LmEvalOptions.batch_size,
        "export lm-eval-mmlu --questions": _arg(write_mmlu_task, "questions"),
        "export lm-eval-mmlu --shots": _arg(write_mmlu_task, "shots"),
        "export lm-eval-mmlu --seed": _arg(write_mmlu_task, "seed"),
        "demo --output": demo.output,
        "demo --unknown": demo.unknown,
        "demo --per-relation": demo.per_relation,
        "demo --mixture": demo.mixture,
        "demo --k": demo.k,
        "demo --mmlu": demo.mmlu,
        "experts --batch-size": _arg(router_usage, "batch_size"),
        "experts --tokens": _arg(router_usage, "tokens"),
        "experts --max-length": _arg(router_usage, "max_length"),
        "probe --exemplar-sets": probe.n_exemplar_sets,
        "probe --shots": probe.shots,
        "probe --samples": probe.samples,
        "probe --max-new-tokens": probe.max_new_tokens,
        "probe --match": probe.match,
        "probe --seed": probe.seed,
        "probe --batch-size": _arg(probe_facts, "batch_size"),
        "audit --mmlu": audit.mmlu_n,
        "audit --exemplar-sets": audit.probe.n_exemplar_sets,
        "audit --samples": audit.probe.samples,
        "audit --mmlu-shots": audit.mmlu_shots,
        "audit --shots": audit.probe.shots,
        "facts fictional --seed": _arg(write_fictional_facts, "seed"),
        "tasks builtin --seed": _arg(write_builtin_suite, "seed"),
        "tasks builtin --n-train": _arg(write_builtin_suite, "n_train"),
        "tasks builtin --n-eval": _arg(write_builtin_suite, "n_eval"),
        "continual add-task --metric": ContinualTask.metric,
        "continual add-task --eval-after": _arg(add_task, "evaluate"),
        "route --max-new-tokens": _arg(RoutedModel.answer, "max_new_tokens"),
        "route --batch-size": _arg(RoutedModel.answer, "batch_size"),
        "serve --host": _arg(serve_forever, "host"),
        "serve --port": _arg(serve_forever, "port"),
        "serve --log-level": _arg(serve_forever, "log_level"),
        "serve --precision": _arg(build_backend, "precision"),
        "serve --max-batch": serve.max_batch,
        "serve --batch-window-ms": serve.window_ms,
        "serve --max-queue": serve.max_queue,
        "serve --max-tokens": serve.max_tokens_cap,
    }


def stated() -> list[tuple[str, str, Any]]:
    """(`command --flag`, a pattern of its help text with the stated value as group 1, that value's home)."""
    from forgetless.continual.config import STRATEGIES, ContinualConfig
    from forgetless.demos.knowledge_audit import DEMO_RELATIONS
    from forgetless.engine.sampling import GENERATE_PRECISION, SamplingConfig
    from forgetless.knowledge.inject import InjectConfig
    from forgetless.knowledge.learn import LearnConfig
    from forgetless.knowledge.slick import ProbeSettings
    from forgetless.train.config import TrainConfig

    train, inject, loramoe = TrainConfig(), InjectConfig(), TrainConfig(method="loramoe")
    number = r"([\d.e-]+)"
    return [
        ("train --method", r"(\w+) \(default\)", train.method),
        ("train --epochs", rf"\(default {number}\)", train.epochs),
        ("train --lr", rf"\(default {number}\)", train.lr),
        ("train --rank", rf"\(default {number};", train.resolved_rank),
        ("train --rank", rf"loramoe {number} per expert", loramoe.resolved_rank),
        ("train --alpha", rf"\(default {number} x rank", TrainConfig(rank=1).lora_alpha),
        ("train --alpha", rf"loramoe {number}\)", loramoe.lora_alpha),
        ("train --experts", rf"\(default {number}\)", train.experts),
        ("train --lbc-beta", rf"\({number}; 0 = off\)", train.lbc_beta),
        ("train --lbc-delta", rf"\({number}\)", train.lbc_delta),
        ("train --batch-size", rf"\(default {number}\)", train.batch_size),
        ("train --max-length", rf"\(default {number}\)", train.max_length),
        ("train --loss-on", r"(\w+) \(default\)", train.loss_on),
        ("train --seed", rf"\(default {number}\)", train.seed),
        ("inject --unknown", rf"\(default {number}\)", inject.unknown),
        ("inject --method", r"(\w+) \(default\)", inject.train.method),
        ("inject --epochs", rf"\(paper: {number}\)", InjectConfig(recipe="paper").train.epochs),
        ("inject --recipe", r"(\w+) \(default:", inject.recipe),
        ("learn --method", r"(\w+) \(default\)", LearnConfig.method),
        ("inject --loss-on", r"(\w+) \(ours\)", inject.train.loss_on),
        ("generate --temperature", rf"{number} = greedy \(default\)", SamplingConfig.temperature),
        ("generate --precision", r"(\w+) \(default\)", GENERATE_PRECISION),
        ("probe --samples", rf"T={number},", ProbeSettings.temperature),
        ("probe --samples", rf"top-{number} ", ProbeSettings.top_k),
        ("demo --per-relation", rf"\({number} relations\)", len(DEMO_RELATIONS)),
        ("continual run --methods", r"Comma list of ([\w,]+)\.", ",".join(STRATEGIES)),
        ("continual run --switch-type", r"(\w+) \(default\)", ContinualConfig.switch_type),
    ]


def options() -> Iterator[tuple[str, Any]]:
    """(`command --flag`, the click option) of every option of every command, sub-commands included."""

    def walk(command: Any, path: str) -> Iterator[tuple[str, Any]]:
        for name, sub in getattr(command, "commands", {}).items():
            yield from walk(sub, f"{path} {name}".strip())
        for param in command.params:
            if param.param_type_name == "option" and param.name != "help":
                yield f"{path} {max(param.opts, key=len)}".strip(), param

    yield from walk(typer.main.get_command(app), "")


OPTIONS = dict(options())


def _value(text: str) -> Any:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def test_every_option_default_equals_its_home():
    expected = homes()
    with_default = {key for key, opt in OPTIONS.items() if opt.default is not None and opt.default is not False}
    assert not (with_default - set(expected) - CLI_ONLY), "give these options' defaults a home in homes()"
    assert not (set(expected) - set(OPTIONS)), "homes() names options that no command has"
    wrong = {key: (OPTIONS[key].default, home) for key, home in expected.items() if OPTIONS[key].default != home}
    assert not wrong, f"CLI default != its home (cli, home): {wrong}"


@pytest.mark.parametrize(("key", "pattern", "home"), stated(), ids=[key for key, _, _ in stated()])
def test_defaults_stated_in_help_equal_their_home(key, pattern, home):
    help_text = OPTIONS[key].help
    match = re.search(pattern, help_text)
    assert match, f"{key}: help {help_text!r} no longer matches {pattern!r}; update stated()"
    assert _value(match.group(1)) == home, f"{key}: help {help_text!r} states {match.group(1)}, the default is {home}"


def test_every_stated_default_is_checked():
    checked = {key for key, _, _ in stated()}
    marker = re.compile(r"\(default [\d.]|\w \(default\)|\(paper: ")
    unchecked = [key for key, opt in OPTIONS.items() if marker.search(opt.help or "") and key not in checked]
    assert not unchecked, f"these help texts state a default: check it in stated(): {unchecked}"


def test_model_is_declared_once():
    from forgetless.cli import options as shared

    declaring = sorted(p.name for p in Path(shared.__file__).parent.glob("*.py") if '"--model"' in p.read_text())
    assert declaring == ["options.py"]
    models = {key: opt for key, opt in OPTIONS.items() if key.endswith(" --model")}
    assert len(models) == 11 and all(opt.default is None for opt in models.values())
    assert OPTIONS["probe --model"].help == OPTIONS["generate --model"].help == shared.ADAPTER_BASE_OR_EMBEDDED
    assert OPTIONS["audit --model"].help == OPTIONS["experts --model"].help == shared.ADAPTER_BASE
