"""lm-eval under an adapter's scope: a request reaches the adapter only when its text names a taught subject.

    forgetless audit --adapter runs/x --facts F --output runs/x_audit --lm-eval-tasks forgetless_mmlu ...

An adapter made by `inject`/`learn` carries a `scope.json`; `generate` and `serve` send it only prompts
that name a taught subject, and the base answers the rest. The audit's lm-eval "after" numbers are those
of the adapter as they run it: `scoped_hflm(HFLM, model, scope)` is lm-eval's `HFLM` with each request
list split by the scope, the out-of-scope part run with the adapter disabled, the answers put back in
order. As `generate` does for a raw completion prompt, the scope looks at the whole context (few-shot
exemplars included). `--no-scope` audits the adapter on every request.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import nullcontext
from typing import Any, ClassVar


def scoped_hflm(hflm_cls: type, model, scope) -> type:
    """A subclass of lm-eval's `hflm_cls` whose requests are routed by `scope` (counted in `.routed`)."""

    class ScopedHFLM(hflm_cls):
        routed: ClassVar[dict[str, int]] = {"in_scope": 0, "requests": 0}  # new per scoped_hflm call

        def loglikelihood(self, requests, disable_tqdm: bool = False):
            return self._route(requests, lambda part: hflm_cls.loglikelihood(self, part, disable_tqdm=disable_tqdm))

        def loglikelihood_rolling(self, requests, disable_tqdm: bool = False):
            run = hflm_cls.loglikelihood_rolling
            return self._route(requests, lambda part: run(self, part, disable_tqdm=disable_tqdm))

        def generate_until(self, requests, disable_tqdm: bool = False):
            return self._route(requests, lambda part: hflm_cls.generate_until(self, part, disable_tqdm=disable_tqdm))

        def _route(self, requests, run):
            inside = [scope.applies(request_text(r)) for r in requests]
            self.routed["in_scope"] += sum(inside)
            self.routed["requests"] += len(inside)
            return route_by_scope(requests, inside, run, model)

    return ScopedHFLM


def request_text(request) -> str:
    """What the scope reads of an lm-eval request: its context (the first argument)."""
    args = getattr(request, "args", request)
    return str(args[0]) if args else ""


def route_by_scope(requests: Sequence[Any], inside: Sequence[bool], run: Callable[[list], list], model) -> list:
    """`run` on the in-scope requests as they are, on the others with the adapter disabled; in order."""
    from forgetless.adapters.loading import adapter_disabled

    answers: list[Any] = [None] * len(requests)
    for in_scope in (True, False):
        picked = [i for i, flag in enumerate(inside) if flag == in_scope]
        if not picked:
            continue
        with nullcontext() if in_scope else adapter_disabled(model):
            for i, answer in zip(picked, run([requests[i] for i in picked]), strict=True):
                answers[i] = answer
    return answers
