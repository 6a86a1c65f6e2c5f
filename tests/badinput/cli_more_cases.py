"""More CLI cases, beyond issue 15: what a new user gets wrong (YAML types, JSONL fields, empty files, folders
for files, unknown option values, zero/negative/huge numbers, missing or wrong-kind adapters) and usage errors.

    from tests.badinput.cli_more_cases import MORE_CLI_CASES
"""

from __future__ import annotations

import json

from tests.badinput.cli_cases import (
    DIVERGE_YAML,
    DIVERGING,
    NOPE,
    QA,
    SEQ,
    TINY,
    adapter_copy,
    facts,
    interrupted,
    stopped_with_the_last_good_checkpoint,
)
from tests.badinput.table import TRAIN, CliCase

T = ["train", "--data", "qa.jsonl", "--output", "out"]  # + flags, + NOPE: options fail before any model
ROW = json.dumps({"prompt": "What is 2+2?", "response": "4"})


def train(name: str, flags: list[str], expect: tuple[str, ...], **files: str | bytes) -> CliCase:
    """A train case with a valid qa.jsonl unless `files` replaces it."""
    return CliCase(f"train {name}", [*T, *flags, *NOPE], expect, files={"qa.jsonl": QA, **files})


def data(name: str, content: str | bytes, expect: tuple[str, ...], file: str = "d.jsonl") -> CliCase:
    """A train case whose --data file holds `content` (... : no file; a name ending in / : a folder)."""
    args = ["train", "--data", file.rstrip("/"), "--output", "out", *NOPE]
    return CliCase(f"train --data {name}", args, expect, files={} if content is ... else {file: content})


def yaml(name: str, text: str, expect: tuple[str, ...]) -> CliCase:
    """A train case whose --config YAML holds `text`."""
    return CliCase(
        f"train YAML {name}", [*T, "--config", "c.yaml", *NOPE], expect, files={"qa.jsonl": QA, "c.yaml": text}
    )


def seq(name: str, text: str, expect: tuple[str, ...], flags: list[str] | None = None) -> CliCase:
    """A continual run case whose task-sequence YAML holds `text`."""
    args = ["continual", "run", "--config", "seq.yaml", "--output", "run", *(flags or []), *NOPE]
    return CliCase(f"continual run {name}", args, expect, files={"seq.yaml": text, "t.jsonl": QA, "e.jsonl": QA})


def gen(name: str, flags: list[str], expect: tuple[str, ...], **files: str) -> CliCase:
    return CliCase(f"generate {name}", ["generate", *flags, *NOPE], expect, files=dict(files))


def probe(name: str, flags: list[str], expect: tuple[str, ...], setup=None, **files: str) -> CliCase:
    args = ["probe", "--facts", "f.jsonl", "--output", "out", *flags, *NOPE]
    return CliCase(f"probe {name}", args, expect, files=dict(files), setup=setup or facts())


def serve(name: str, flags: list[str], expect: tuple[str, ...], setup=None) -> CliCase:
    port = [] if "--port" in flags else ["--port", "0"]
    return CliCase(f"serve {name}", ["serve", *flags, *port, *NOPE], expect, setup=setup)


MORE_CLI_CASES = [
    # train: numbers and option values
    train("--epochs 0", ["--epochs", "0"], ("--epochs",)),
    train("--epochs -1", ["--epochs", "-1"], ("--epochs",)),
    train("--batch-size 0", ["--batch-size", "0"], ("--batch-size",)),
    train("--max-length 0", ["--max-length", "0"], ("--max-length",)),
    train("--rank -3", ["--rank", "-3"], ("--rank",)),
    train("--alpha 0", ["--alpha", "0"], ("--alpha",)),
    train("--max-steps -5", ["--max-steps", "-5"], ("--max-steps",)),
    train("--lr 1e999 (overflows to inf)", ["--lr", "1e999"], ("finite",)),
    train("--precision fp16", ["--precision", "fp16"], ("--precision",)),
    train("--method LoRA (names are lower case)", ["--method", "LoRA"], ("--method",)),
    train("--method loramoe --experts 0", ["--method", "loramoe", "--experts", "0"], ("experts",)),
    train("--epochs ten (not a number)", ["--epochs", "ten"], ("--epochs",)),
    train("--output that is the data file", ["--output", "qa.jsonl"], ("qa.jsonl", "file")),
    CliCase(
        "train --output a folder forgetless did not write, --overwrite",
        [*T, "--overwrite", *NOPE],
        (".forgetless-output",),
        files={"qa.jsonl": QA, "out/mine.txt": "precious"},
    ),
    CliCase(
        "train --output the folder that holds --data, --overwrite",
        ["train", "--data", "out/qa.jsonl", "--output", "out", "--overwrite", *NOPE],
        ("input",),
        files={"out/qa.jsonl": QA, "out/.forgetless-output": "ours"},
    ),
    CliCase(
        "train whose loss becomes non-finite (lr 1e30) stops and keeps its last good checkpoint",
        DIVERGING,
        ("loss became",),
        files={"qa.jsonl": QA, "run.yaml": DIVERGE_YAML},
        changes=(".out.partial",),
        check=stopped_with_the_last_good_checkpoint,
        one_line=False,  # the one-line rule: the issue case of cli_cases.py
    ),
    CliCase("train --resume with another --rank", [*TRAIN, "--resume", "--rank", "2"], ("rank",), setup=interrupted()),
    # train: data files
    data("that does not exist", ..., ("not found",), file="absent.jsonl"),
    data("that is empty", "", ("empty",)),
    data("of blank lines only", "\n\n  \n", ("d.jsonl",)),
    data("that is a directory", "", ("directory",), file="dir/"),
    data("with a JSON array on line 2", f"{ROW}\n[1, 2]\n", ("d.jsonl:2",)),
    data("with a number as prompt", ROW + "\n" + json.dumps({"prompt": 5, "response": "x"}) + "\n", ("d.jsonl:2",)),
    data("with an empty messages list", json.dumps({"messages": []}) + "\n", ("d.jsonl:1",)),
    data(
        "with a message role 'wizard'",
        json.dumps({"messages": [{"role": "wizard", "content": "x"}, {"role": "assistant", "content": "y"}]}) + "\n",
        ("d.jsonl:1",),
    ),
    data("of CSV without a response column", "prompt,answer\nhi,there\n", ("response",), file="d.csv"),
    data("with an unknown extension", "prompt: hi\n", (".txt",), file="d.txt"),
    # train: YAML configs
    yaml("rank: eight", "rank: eight\n", ("c.yaml:1:rank",)),
    yaml("lr: [1, 2]", "lr: [1, 2]\n", ("c.yaml:1:lr",)),
    yaml("that is a list", "- rank: 4\n", ("c.yaml",)),
    yaml("that is a plain string", "just some text\n", ("c.yaml",)),
    yaml("with an unknown key", "rank: 4\nlearning_rate: 0.1\n", ("c.yaml:2:learning_rate",)),
    yaml("target_modules: 5", "target_modules: 5\n", ("c.yaml:1:target_modules",)),
    CliCase(
        "train --config that is a directory",
        [*T, "--config", "conf", *NOPE],
        ("conf", "directory"),
        files={"qa.jsonl": QA, "conf/": ""},
    ),
    # generate
    gen("--max-new-tokens 0", ["--prompt", "hi", "--max-new-tokens", "0"], ("max",)),
    gen("--temperature -1", ["--prompt", "hi", "--temperature", "-1"], ("temperature",)),
    gen("--top-p 1.5", ["--prompt", "hi", "--top-p", "1.5"], ("top",)),
    gen("--top-k -1", ["--prompt", "hi", "--top-k", "-1"], ("top",)),
    gen("--precision fp8", ["--prompt", "hi", "--precision", "fp8"], ("precision",)),
    gen("--input that is a directory", ["--input", "dir"], ("dir",), **{"dir/": ""}),
    gen("--input with a JSON array line", ["--input", "p.jsonl"], ("p.jsonl:1",), **{"p.jsonl": "[1]\n"}),
    gen("--input with no prompts", ["--input", "p.jsonl"], ("no prompts",), **{"p.jsonl": "\n"}),
    gen("--adapter that does not exist", ["--adapter", "missing", "--prompt", "hi"], ("missing",)),
    gen("--adapter that is a file", ["--adapter", "a.txt", "--prompt", "hi"], ("a.txt",), **{"a.txt": "x"}),
    CliCase(
        "generate --adapter whose adapter_config.json is not JSON",
        ["generate", "--adapter", "bad", "--prompt", "hi", *TINY],
        ("adapter_config.json",),
        setup=adapter_copy(then=lambda folder, world: (folder / "bad" / "adapter_config.json").write_text("{")),
    ),
    CliCase(
        "generate --adapter whose scope.json is damaged",
        ["generate", "--adapter", "bad", "--prompt", "hi", *TINY],
        ("scope.json", "unreadable scope"),
        setup=adapter_copy(then=lambda folder, world: (folder / "bad" / "scope.json").write_text('{"subjects": 1}')),
    ),
    CliCase(
        "experts --adapter of a LoRA (not LoRAMoE)",
        ["experts", "--adapter", "{adapter}", "--data", "qa.jsonl", *TINY],
        ("not LoRAMoE",),
        files={"qa.jsonl": QA},
    ),
    CliCase(
        "experts --tokens prompt",
        ["experts", "--adapter", "{adapter}", "--data", "qa.jsonl", "--tokens", "x"],
        ("--tokens",),
    ),
    # probe
    probe("--shots -1", ["--shots", "-1"], ("--shots",)),
    probe("--exemplar-sets 0", ["--exemplar-sets", "0"], ("--exemplar-sets",)),
    probe("--match fuzzy", ["--match", "fuzzy"], ("--match",)),
    probe("--samples -1", ["--samples", "-1"], ("--samples",)),
    probe("--max-new-tokens 0", ["--max-new-tokens", "0"], ("--max-new-tokens",)),
    probe("--facts that does not exist", [], ("f.jsonl",), setup=lambda folder, world: None),
    probe(
        "--facts with a fact without object",
        [],
        ("f.jsonl:1",),
        setup=lambda f, w: None,
        **{"f.jsonl": '{"subject": "A", "relation": "capital"}\n'},
    ),
    probe("with too few facts per relation for --shots 4", [], ("--shots",), setup=facts(3)),
    probe("--output that is a file", [], ("file",), **{"out": "x"}),
    probe("--output that is not empty and holds no probe", [], ("no probe cache",), **{"out/notes.txt": "x"}),
    # continual, route, serve, facts, tasks, export, inject, audit, learn
    seq("with no tasks", "model: {model}\n", ("tasks",)),
    seq("with tasks that are not a list", "tasks: first\n", ("tasks",)),
    seq("with an unknown metric", SEQ.replace("exact_match", "bleu"), ("metric",)),
    seq("with a task named ../x", SEQ.replace("name: first", "name: ../x"), ("../x",)),
    seq("--methods foo", SEQ, ("foo",), ["--methods", "foo"]),
    seq("--rehearsal 1.5", SEQ, ("rehearsal",), ["--rehearsal", "1.5"]),
    seq("with a train file that does not exist", SEQ.replace("t.jsonl", "absent.jsonl"), ("absent.jsonl",)),
    seq("--resume of a folder that is no run", SEQ, ("nothing to resume",), ["--resume"]),
    CliCase(
        "route --run of a folder that is no run", ["route", "--run", ".", "--prompt", "hi"], ("not a continual run",)
    ),
    CliCase(
        "route with --prompt and --input", ["route", "--run", ".", "--prompt", "x", "--input", "p.jsonl"], ("--prompt",)
    ),
    serve("--port 70000", ["--port", "70000"], ("--port",)),
    serve("--max-batch 0", ["--max-batch", "0"], ("--max-batch",)),
    serve("--adapter without NAME=", ["--adapter", "justapath"], ("NAME=DIR",)),
    serve("--adapter with a path-like name", ["--adapter", "../x=bad"], ("../x",), setup=adapter_copy()),
    serve("--adapter of a folder that does not exist", ["--adapter", "x=missing"], ("missing",)),
    serve("--run and --adapter together", ["--run", ".", "--adapter", "x=bad"], ("--run",)),
    CliCase("facts fictional --n 0", ["facts", "fictional", "--output", "f.jsonl", "--n", "0"], ("--n",)),
    CliCase("tasks builtin --n-train 0", ["tasks", "builtin", "--output", "t", "--n-train", "0"], ("--n-train",)),
    CliCase(
        "export lm-eval-mmlu --questions 0",
        ["export", "lm-eval-mmlu", "--output", "t", "--questions", "0"],
        ("--questions",),
    ),
    CliCase(
        "inject --mixture bogus",
        ["inject", "--facts", "f.jsonl", "--output", "out", "--mixture", "bogus", *NOPE],
        ("mixture",),
        files={"f.jsonl": ""},
    ),
    CliCase(
        "audit --adapter that does not exist",
        ["audit", "--adapter", "none", "--facts", "f.jsonl", "--output", "out", *NOPE],
        ("none",),
        setup=facts(),
    ),
    CliCase(
        "learn --facts that does not exist",
        ["learn", "--facts", "absent.jsonl", "--output", "out", *NOPE],
        ("absent.jsonl",),
    ),
    # usage errors
    CliCase("an unknown command", ["trian"], ("trian",)),
    CliCase("an unknown option", [*T, "--learning-rate", "1"], ("--learning-rate",), files={"qa.jsonl": QA}),
    CliCase("probe without --facts", ["probe", "--output", "out"], ("--facts",)),
]

__all__ = ["MORE_CLI_CASES"]
