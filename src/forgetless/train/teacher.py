"""The frozen base's log-probabilities on anchor answers, computed once per record instead of every step.

    cache = TeacherCache(budget_bytes=1 << 30)
    teacher = cache.log_probs(record_index, labelled, compute)   # [N labelled tokens, V], row-major order

`anchor_kl` (see `forgetless.train.trainer`) needs the base's next-token distribution on the labelled
tokens of every `world` record, every time the record is in a batch. The base is frozen, so that
distribution never changes: the first epoch computes it (the same forward under `disable_adapter()` as
before) and keeps it, and later epochs skip the teacher forward (about a fifth of a step on the forgetless
recipe's records). Positions are explicit (`position_ids` from the collator), so a record's logits do not
depend on the batch it lands in. Nothing is kept once the cache would pass `budget_bytes`; the teacher
forward then runs every step, as without a cache.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


class TeacherCache:
    """{record index: teacher log-probs [labelled tokens, V]} within a memory budget."""

    def __init__(self, budget_bytes: int = 1 << 30):
        self.budget = budget_bytes
        self.used = 0
        self.full = False
        self._rows: dict[int, torch.Tensor] = {}

    def log_probs(
        self, records: list[int], labelled: torch.Tensor, compute: Callable[[torch.Tensor], torch.Tensor]
    ) -> torch.Tensor:
        """Teacher log-probs of the labelled tokens of `records` (`labelled`: [R, K] bool), rows in order.

        `compute(which)` runs the teacher on the rows where `which` ([R] bool) is True and returns their
        log-probs [R', K, V]; it is called only for rows not cached yet."""
        missing = torch.tensor([r not in self._rows for r in records], device=labelled.device)
        fresh: dict[int, torch.Tensor] = {}
        if bool(missing.any()):
            for row, log_probs in zip(missing.nonzero().flatten().tolist(), compute(missing), strict=True):
                fresh[row] = log_probs[labelled[row]]
                self._store(records[row], fresh[row])
        return torch.cat([fresh[row] if row in fresh else self._rows[r] for row, r in enumerate(records)])

    def _store(self, record: int, log_probs: torch.Tensor) -> None:
        size = log_probs.numel() * log_probs.element_size()
        if self.full or self.used + size > self.budget:
            self.full = True
            return
        self._rows[record] = log_probs.detach()
        self.used += size

    def __len__(self) -> int:
        return len(self._rows)
