"""The adapter-method interface and its registry: what a training run, the loader, the mixed-batch
server and the exporters ask of a method, so that none of them compares method names.

    from forgetless.adapters.base import AdapterMethod, register_method

    @register_method
    class MyMethod:              # one folder: adapters/my_method/ (config, layer, model, method.py)
        name = "my_method"       # the --method value and the YAML `method:` key
        ...                      # the members of AdapterMethod below

A method registers itself when its package is imported (like peft's `register_peft_method`);
`forgetless.adapters.registry` imports the built-in ones and answers lookups. Adding a method is one
folder, its registration, and a row in tests/unit/test_adapter_methods.py (the method test table).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

from forgetless.errors import ConfigError

METHODS: dict[str, type[AdapterMethod]] = {}  # name -> class, in registration order


@runtime_checkable
class AdapterMethod(Protocol):
    """One way of adapting a frozen base model. Built per training run from its resolved TrainConfig."""

    name: ClassVar[str]  # registry key: `--method NAME`, YAML `method: NAME`
    title: ClassVar[str]  # how messages name it ("LoRA", "LoRAMoE")
    default_rank: ClassVar[int]  # rank when --rank is not given
    options: ClassVar[tuple[str, ...]]  # TrainConfig fields (CLI flags / YAML keys) only this method reads
    mixable: ClassVar[bool]  # rows of it can share one batch with other adapters (PEFT `adapter_names`)
    vllm_servable: ClassVar[bool]  # `forgetless export vllm` can export it
    owns_checkpoints: ClassVar[bool]  # saves/loads its own checkpoints (else the Trainer's PEFT saving)
    row_separable: ClassVar[bool]  # its losses are sums over rows: a batch may run as length groups

    def __init__(self, cfg: Any) -> None: ...

    @staticmethod
    def default_alpha(rank: int) -> float:
        """Alpha when --alpha is not given."""
        ...

    @classmethod
    def validate_options(cls, cfg: Any) -> None:
        """Raise ConfigError for a bad value of one of `options` (may fill derived ones)."""
        ...

    def check_types(self, records: list) -> None:
        """Raise ConfigError when the records' `type` labels do not suit this method's settings."""
        ...

    def wrap(self, model: Any) -> Any:
        """The base model with a fresh, trainable adapter (base weights frozen)."""
        ...

    def save(self, model: Any, directory: Path, info: Any) -> None:
        """Write the adapter (PEFT layout) to `directory`; `info` is the base's ModelInfo or None."""
        ...

    def load_checkpoint(self, model: Any, directory: Path) -> None:
        """Copy a checkpoint's adapter tensors into `model` (for --resume; only if owns_checkpoints)."""
        ...

    def loss_context(self, model: Any, inputs: dict[str, Any]) -> AbstractContextManager:
        """A context entered around the training forward (e.g. to hand sample types to routers)."""
        ...

    def aux_losses(self, model: Any, inputs: dict[str, Any]) -> dict[str, tuple[Any, float]]:
        """Extra losses {name: (value, weight)} added to the LM loss as weight * value."""
        ...

    @classmethod
    def attach(cls, base: Any, path: Path) -> Any:
        """Load a saved adapter of this method onto a fresh base model, in eval mode."""
        ...

    @classmethod
    def holds(cls, model: Any) -> bool:
        """Whether `model` carries an adapter of this method."""
        ...

    @classmethod
    def disabled(cls, model: Any) -> AbstractContextManager:
        """A context in which `model` computes exactly as its base model."""
        ...


def register_method(cls: type[AdapterMethod]) -> type[AdapterMethod]:
    """Add a method to the registry (usable as a class decorator). Its name must be new."""
    missing = [member for member in _MEMBERS if not hasattr(cls, member)]
    if missing:
        raise TypeError(f"{cls.__name__} does not implement AdapterMethod: missing {', '.join(missing)}")
    if cls.name in METHODS and METHODS[cls.name] is not cls:
        raise ValueError(f"adapter method {cls.name!r} is already registered")
    METHODS[cls.name] = cls
    return cls


def unregister_method(name: str) -> None:
    """Remove a method (tests register throwaway methods)."""
    METHODS.pop(name, None)


@contextmanager
def registered(cls: type[AdapterMethod]) -> Iterator[type[AdapterMethod]]:
    """The method registered inside the block only."""
    register_method(cls)
    try:
        yield cls
    finally:
        unregister_method(cls.name)


def method_class(name: str) -> type[AdapterMethod]:
    """The registered class of `name`; ConfigError naming the choices otherwise."""
    if name not in METHODS:
        raise ConfigError(f"--method must be one of {', '.join(METHODS)}")
    return METHODS[name]


_MEMBERS = (
    "name",
    "title",
    "default_rank",
    "options",
    "mixable",
    "vllm_servable",
    "owns_checkpoints",
    "row_separable",
    "default_alpha",
    "validate_options",
    "check_types",
    "wrap",
    "save",
    "load_checkpoint",
    "loss_context",
    "aux_losses",
    "attach",
    "holds",
    "disabled",
)
