"""A fact adapter's scope: it answers only questions about the subjects it was taught; the base answers the rest.

    scope = FactScope.for_facts(new_facts, universe=all_known_facts)
    scope.save(adapter_dir)                      # adapter_dir/scope.json (plain JSON, no pickle)
    scope = FactScope.load(adapter_dir)          # None when the adapter has no scope
    scope.applies("What is the capital of Chad?")   # True when Chad was taught

Why: training moves the whole network, so even with anchors and KL to the base, teaching 50 capitals
changed 12-25 of ~120 unrelated HighlyKnown facts (facts_that_stick: kept 0.82). Keyed editors (GRACE,
WISE, SERAC) keep locality by routing; this is the simplest router that cannot forget: a prompt whose
last user message names no taught subject goes to the base model, bit for bit. Matching is on whole words,
case-insensitive, after removing longer names from `universe` that contain a taught subject ("Equatorial
Guinea" is not "Guinea", "Niger" is not "Nigeria"). A question about a taught subject's *other* relations
(its currency when its capital was taught) is in scope and goes to the adapter; the audit counts it.

Limits, said plainly: a question that does not name the subject ("its capital?", a pronoun, an alias not
in the facts file) gets the base's answer. `forgetless generate` and `serve` apply the scope; the adapter
exported to vLLM or loaded with plain PEFT has none (inject and learn report those numbers too).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from forgetless.errors import DataError
from forgetless.utils.fileio import write_json_atomic

SCOPE_FILE = "scope.json"
SCOPE_VERSION = 1


@dataclass(frozen=True)
class FactScope:
    """Taught subjects, and the longer names (shadows) that contain one of them but are other entities."""

    subjects: tuple[str, ...]
    shadows: tuple[str, ...] = ()

    @classmethod
    def for_facts(cls, taught: Iterable[Any], universe: Iterable[Any] = ()) -> FactScope:
        """The scope of facts `taught` (anything with `.subject`); `universe`: other known facts whose
        subjects may contain a taught one."""
        subjects = sorted({f.subject.strip() for f in taught if f.subject.strip()}, key=str.lower)
        lowered = [s.lower() for s in subjects]
        others = {f.subject.strip() for f in universe} - set(subjects)
        shadows = sorted(o for o in others if any(_contains_word(o.lower(), s) for s in lowered))
        return cls(tuple(subjects), tuple(shadows))

    def applies(self, text: str) -> bool:
        """Whether `text` names a taught subject (longer names from the universe removed first)."""
        lowered = text.lower()
        for shadow in sorted(self.shadows, key=len, reverse=True):
            lowered = lowered.replace(shadow.lower(), " ")
        return any(_contains_word(lowered, s.lower()) for s in self.subjects)

    def applies_to_conversation(self, messages: Sequence[dict[str, Any]]) -> bool:
        """Whether the conversation's last user message is in scope (a bare string counts as one)."""
        users = [m.get("content", "") for m in messages if m.get("role") == "user"]
        return bool(users) and self.applies(str(users[-1]))

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": SCOPE_VERSION,
            "kind": "subjects",
            "subjects": list(self.subjects),
            "shadows": list(self.shadows),
        }

    def save(self, adapter_dir: str | Path) -> Path:
        return write_json_atomic(Path(adapter_dir) / SCOPE_FILE, self.to_dict())

    @classmethod
    def load(cls, adapter_dir: str | Path) -> FactScope | None:
        """The scope saved next to an adapter, or None when it has none."""
        path = Path(adapter_dir) / SCOPE_FILE
        if not path.is_file():
            return None
        try:
            row = json.loads(path.read_text(encoding="utf-8"))
            subjects, shadows = row["subjects"], row.get("shadows", [])
            if row.get("kind") != "subjects" or not all(isinstance(s, str) for s in [*subjects, *shadows]):
                raise ValueError("not a subject scope")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise DataError(f"{path}: unreadable scope ({exc}); delete it to use the adapter unscoped") from None
        return cls(tuple(subjects), tuple(shadows))


def _contains_word(text: str, phrase: str) -> bool:
    return re.search(rf"(?<!\w){re.escape(phrase)}(?!\w)", text) is not None
