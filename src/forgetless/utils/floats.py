"""Float facts the exact speed-ups rely on.

from forgetless.utils.floats import exact_scale
exact_scale(2.0)   # True: x * 2.0 rounds nothing in fp32, bf16 or fp16 (short of overflow)
"""

from __future__ import annotations

import math


def exact_scale(value) -> bool:
    """Whether multiplying by `value` is exact in any binary float format: a positive power of two, so
    `(h @ B) * value` and `h @ (B * value)` give the same numbers bit for bit (barring overflow and
    subnormals)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        return False
    return math.frexp(value)[0] == 0.5
