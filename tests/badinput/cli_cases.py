"""The CLI cases of issue 15 (data loss, tracebacks instead of one-line errors, validation after the work,
determinism), each as the red-team pass found it. Shared fixtures of the case files are here too.

    from tests.badinput.cli_cases import ISSUE_CLI_CASES
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tests.badinput.table import TRAIN, CliCase, CliResult, World, run_cli
from tests.conftest import QA_ROWS

QA = "".join(json.dumps(row) + "\n" for row in QA_ROWS)
NOPE = ["--model", "./nope"]  # a model that does not exist: any option error must come before loading it
TINY = ["--model", "{model}"]
SEQ = """# forgetless continual run --config seq.yaml --output run
model: {model}
abstain_keep: null
tasks:
  - {name: first, train: t.jsonl, eval: e.jsonl, metric: exact_match}
"""


def facts(n: int = 80, name: str = "f.jsonl"):
    """Setup: `n` fictional facts in NAME."""

    def setup(folder: Path, world: World) -> None:
        from forgetless.knowledge import write_fictional_facts

        write_fictional_facts(folder / name, n, 0)

    return setup


def adapter_copy(damage: str | None = None, then=None):
    """Setup: the trained adapter copied to `bad/`, its weights damaged (truncated, garbage or missing)."""

    def setup(folder: Path, world: World) -> None:
        weights = shutil.copytree(world.adapter, folder / "bad") / "adapter_model.safetensors"
        data = weights.read_bytes()
        if damage == "truncated":
            weights.write_bytes(data[: len(data) // 2])
        elif damage == "garbage":
            weights.write_bytes(b"garbage\n")
        elif damage == "missing":
            weights.unlink()
        if then:
            then(folder, world)

    return setup


def interrupted(extra: dict[str, str] | None = None):
    """Setup: the training run stopped after checkpoint-2 (see World), plus `extra` files."""

    def setup(folder: Path, world: World) -> None:
        shutil.copytree(world.interrupted, folder, dirs_exist_ok=True)
        for name, text in (extra or {}).items():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_text(text)

    return setup


def _resumed_to_the_end(folder: Path, result: CliResult) -> None:
    assert (folder / "out" / "adapter_model.safetensors").is_file(), "no adapter published"
    assert not (folder / ".out.partial").exists(), "staging folder left"


def stopped_with_the_last_good_checkpoint(folder: Path, result: CliResult) -> None:
    assert not (folder / "out").exists(), "a diverged run published an adapter"
    assert any((folder / ".out.partial" / "checkpoints").glob("checkpoint-*")), "no checkpoint kept"


def _same_bytes_twice(folder: Path, result: CliResult) -> None:
    model = json.loads((folder / "a" / "forgetless.json").read_text())["config"]["model"]
    again = run_cli([*_LORAMOE[:4], "b", *_LORAMOE[5:-1], model], folder)
    assert again.code == 0, again.stderr[-300:]
    first, second = (folder / name / "adapter_model.safetensors" for name in ("a", "b"))
    assert first.read_bytes() == second.read_bytes(), "two LoRAMoE runs with one seed gave different bytes"


def _documents_the_host_header(folder: Path, result: CliResult) -> None:
    assert "Host header" in " ".join(result.stdout.split()), "serve --help does not mention the Host header"


_LORAMOE = ["train", "--data", "qa.jsonl", "--output", "a", "--method", "loramoe", "--max-steps", "1", *TINY]
DIVERGING = ["train", "--config", "run.yaml", "--data", "qa.jsonl", "--output", "out", *TINY]
DIVERGE_YAML = "max_steps: 4\nsave_steps: 1\nbatch_size: 2\nlogging_steps: 1\nlr: 1.0e+30\nwarmup_ratio: 0\n"
_DAMAGED = {
    "generate": ["generate", "--adapter", "bad", "--prompt", "hi", *TINY],
    "probe": ["probe", "--facts", "f.jsonl", "--output", "out", "--adapter", "bad", *TINY],
    "serve": ["serve", "--adapter", "x=bad", *TINY, "--port", "0"],
}


def _damaged_adapter_cases() -> list[CliCase]:
    cases = []
    for damage in ("truncated", "garbage"):
        for command, args in _DAMAGED.items():
            setup = adapter_copy(damage, facts() if command == "probe" else None)
            name = f"{command}: {damage} adapter_model.safetensors"
            cases.append(CliCase(name, args, ("adapter_model.safetensors",), setup=setup))
    return cases


ISSUE_CLI_CASES = [
    # -------------------------------------------------------------------------------- data loss
    CliCase(
        "train --output (a parent holding data, notes and the cwd) --overwrite",
        ["train", "--data", "../qa.jsonl", "--output", "../../proj", "--overwrite", *TINY, "--max-steps", "1"],
        ("current directory",),
        files={"proj/work/": "", "proj/qa.jsonl": QA, "proj/notes.txt": "precious"},
        cwd="proj/work",
    ),
    CliCase(
        "train --output .. --overwrite",
        ["train", "--data", "qa.jsonl", "--output", "..", "--overwrite", *TINY, "--max-steps", "1"],
        ("current directory",),
        files={"work/qa.jsonl": QA},
        cwd="work",
    ),
    CliCase(
        "train --resume after a kill while checkpoint-9 was written (only README.md)",
        [*TRAIN, "--resume"],
        setup=interrupted({".out.partial/checkpoints/checkpoint-9/README.md": "partial"}),
        code=0,
        changes=None,
        check=_resumed_to_the_end,
    ),
    CliCase("train again without --resume keeps the checkpoints", TRAIN, ("--resume",), setup=interrupted()),
    CliCase(
        "train --resume with different --data",
        [*TRAIN[:4], "other.jsonl", *TRAIN[5:], "--resume"],
        ("different --data",),
        setup=interrupted({"other.jsonl": QA.split("\n", 1)[1]}),
    ),
    CliCase("train --resume with a different --lr", [*TRAIN, "--resume", "--lr", "0.5"], ("lr",), setup=interrupted()),
    CliCase("train --lr inf", ["train", "--data", "qa.jsonl", "--output", "out", "--lr", "inf", *NOPE], ("finite",)),
    CliCase(
        "train whose loss becomes non-finite stops with a one-line error",
        DIVERGING,
        ("loss became",),
        files={"qa.jsonl": QA, "run.yaml": DIVERGE_YAML},
        changes=(".out.partial",),
        check=stopped_with_the_last_good_checkpoint,
    ),
    # --------------------------------------------------------------------- one-line errors, not tracebacks
    CliCase(
        "train --config of non-UTF-8 YAML",
        ["train", "--config", "c.yaml", "--data", "qa.jsonl", "--output", "out", *NOPE],
        ("c.yaml:1", "UTF-8"),
        files={"qa.jsonl": QA, "c.yaml": b"lr: caf\xe9\n"},
    ),
    CliCase(
        "probe --facts of non-UTF-8 JSONL",
        ["probe", "--facts", "f.jsonl", "--output", "out", *NOPE],
        ("f.jsonl:1", "UTF-8"),
        files={"f.jsonl": b'{"subject": "caf\xe9"}\n'},
    ),
    CliCase(
        "generate --output in a folder without write permission",
        ["generate", "--prompt", "hi", "--output", "ro/x.jsonl", *NOPE],
        ("permission",),
        setup=lambda folder, world: (folder / "ro").mkdir(mode=0o555),
        root_skips=True,
    ),
    CliCase(
        "generate --output under a file",
        ["generate", "--prompt", "hi", "--output", "qa.jsonl/x.jsonl", *NOPE],
        ("is a file",),
        files={"qa.jsonl": QA},
    ),
    CliCase(
        "facts fictional --output under a file",
        ["facts", "fictional", "--output", "qa.jsonl/x.jsonl"],
        ("is a file",),
        files={"qa.jsonl": QA},
    ),
    CliCase(
        "generate --output that is a directory",
        ["generate", "--prompt", "hi", "--output", "outdir", *NOPE],
        ("is a directory",),
        files={"outdir/": ""},
    ),
    CliCase(
        "facts countries --output that is a directory",
        ["facts", "countries", "--output", "outdir"],
        ("is a directory",),
        files={"outdir/": ""},
    ),
    CliCase(
        "generate --input: an unwritable --output is found before the work",
        ["generate", "--input", "p.jsonl", "--output", "outdir", *NOPE],
        ("is a directory",),
        files={"outdir/": "", "p.jsonl": '{"prompt": "hi"}\n'},
    ),
    *_damaged_adapter_cases(),
    CliCase(
        "train --targets bogus",
        ["train", "--data", "qa.jsonl", "--output", "out", *TINY, "--targets", "bogus", "--max-steps", "1"],
        ("--targets bogus", "q_proj"),
        files={"qa.jsonl": QA},
    ),
    CliCase(
        "train YAML warmup_ratio: -3",
        ["train", "--config", "c.yaml", *NOPE],
        ("warmup-ratio",),
        files={"qa.jsonl": QA, "c.yaml": "data: qa.jsonl\noutput: out\nwarmup_ratio: -3\n"},
    ),
    CliCase("generate --batch-size 0", ["generate", "--prompt", "hi", "--batch-size", "0", *NOPE], ("--batch-size",)),
    CliCase(
        "continual run --max-eval 0",
        ["continual", "run", "--config", "seq.yaml", "--output", "run", "--max-eval", "0", *NOPE],
        ("max_eval",),
        files={"seq.yaml": SEQ, "t.jsonl": QA, "e.jsonl": QA},
    ),
    CliCase(
        "generate --adapter without adapter_model.safetensors",
        ["generate", "--adapter", "bad", "--prompt", "hi", *TINY],
        ("adapter_model.safetensors",),
        setup=adapter_copy("missing"),
    ),
    # ------------------------------------------------------------------------- validation before the work
    CliCase(
        "inject --method dora",
        ["inject", "--facts", "f.jsonl", "--output", "out", "--method", "dora", *NOPE],
        ("method",),
        files={"f.jsonl": ""},
    ),
    CliCase(
        "audit --mmlu -5",
        ["audit", "--adapter", "bad", "--facts", "f.jsonl", "--output", "out", "--mmlu", "-5", *NOPE],
        ("--mmlu",),
        setup=adapter_copy(then=facts()),
    ),
    # ------------------------------------------------------------------------------------- determinism
    CliCase(
        "train --method loramoe twice with one seed gives the same bytes",
        _LORAMOE,
        files={"qa.jsonl": QA},
        code=0,
        changes=None,
        check=_same_bytes_twice,
    ),
    CliCase(
        "serve --help documents the unchecked Host header",
        ["serve", "--help"],
        code=0,
        check=_documents_the_host_header,
    ),
]
for _case in ISSUE_CLI_CASES:
    _case.issue = True  # every case above is one the red-team pass of issue 15 found

__all__ = [
    "DIVERGE_YAML",
    "DIVERGING",
    "ISSUE_CLI_CASES",
    "NOPE",
    "QA",
    "SEQ",
    "TINY",
    "adapter_copy",
    "facts",
    "interrupted",
    "stopped_with_the_last_good_checkpoint",
]
