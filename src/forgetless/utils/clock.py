"""Wall time per phase of a run, for results.json (where did the time go?).

clock = PhaseClock()
with clock("train"):
    ...
result["seconds"] = clock.seconds      # {"train": 81.2, ...}, rounded to 0.1 s
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager


class PhaseClock:
    """Sums the wall time spent in each named phase (a phase entered twice adds up)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, phase: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            spent = self.seconds.get(phase, 0.0) + time.perf_counter() - start
            self.seconds[phase] = round(spent, 1)
