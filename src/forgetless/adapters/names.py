"""Names every adapter layer agrees on.

    from forgetless.adapters.names import BASE
    switch.route(prompts)[0].task == BASE   # the switch abstained: the base model answers this prompt

`BASE` ("__base__") is the adapter name that means "no adapter, the base model alone": peft runs a row of
a mixed batch named `__base__` on the bare base (`adapter_names=[...]`), the switch routes a prompt it does
not recognise to it, and no adapter or task may take it as its own name.
"""

from __future__ import annotations

BASE = "__base__"

__all__ = ["BASE"]
