"""Put LoRAMoE into a base model, and save/load it as a self-describing adapter directory.

    model = inject_loramoe(model, LoRAMoEConfig(target_modules=("q_proj", "v_proj")))
    ...train...
    save_loramoe(model, cfg, "runs/x/adapter", base_model_name="HuggingFaceTB/SmolLM2-135M",
                 base_model_fingerprint={"hidden_size": 576, "num_hidden_layers": 30})
    model = load_loramoe(fresh_base, "runs/x/adapter", expected_fingerprint=same_dict)

An adapter directory holds exactly two files, both written atomically:

* `adapter_config.json`: the config dict (method "loramoe", experts, rank, alpha, world/task
  groups, targets, library version, base model name and the caller's `base_model_fingerprint`);
* `adapter_model.safetensors`: only the adapter tensors (`<module path>.lora_A`, `.lora_B`,
  `.router.weight`); safetensors only, never pickle.

`load_loramoe` checks the fingerprint and every tensor shape BEFORE it changes the model, and raises
`ModelError` when the adapter does not fit.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from forgetless.adapters.loramoe.balance import loramoe_layers
from forgetless.adapters.loramoe.config import METHOD, LoRAMoEConfig
from forgetless.adapters.loramoe.layer import LoRAMoELinear
from forgetless.errors import ConfigError, ForgetlessError, ModelError
from forgetless.utils.fileio import temp_sibling, write_json_atomic

CONFIG_NAME = "adapter_config.json"
WEIGHTS_NAME = "adapter_model.safetensors"


def _matches(name: str, targets: tuple[str, ...]) -> bool:
    return any(name == t or name.endswith("." + t) for t in targets)


def find_targets(model: nn.Module, cfg: LoRAMoEConfig) -> list[tuple[str, nn.Linear]]:
    """The `nn.Linear` modules whose name ends with one of `cfg.target_modules` (ConfigError if none)."""
    if loramoe_layers(model):
        raise ConfigError("the model already has LoRAMoE layers; inject into a fresh base model")
    linears = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    found = [(n, m) for n, m in linears if _matches(n, cfg.target_modules)]
    if not found:
        names = sorted({n.rsplit(".", 1)[-1] for n, _ in linears})
        raise ConfigError(
            f"loramoe target_modules={list(cfg.target_modules)} matched no linear layer of the model; "
            f"available linear names include {names[:8]}"
        )
    return found


def _set_module(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)


def inject_loramoe(model: nn.Module, cfg: LoRAMoEConfig) -> nn.Module:
    """Freeze every base parameter and replace each targeted `nn.Linear` by a `LoRAMoELinear` (in place)."""
    targets = find_targets(model, cfg)
    for p in model.parameters():
        p.requires_grad_(False)
    for name, linear in targets:
        layer = LoRAMoELinear(linear, cfg.num_experts, cfg.rank, cfg.alpha, cfg.dropout, cfg.router_init_std)
        _set_module(model, name, layer)
    return model


def loramoe_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Only the adapter tensors, keyed `<module path>.lora_A|lora_B|router.weight`."""
    state: dict[str, torch.Tensor] = {}
    for name, layer in loramoe_layers(model):
        for key, param in layer.adapter_parameters().items():
            state[f"{name}.{key}"] = param.detach()
    if not state:
        raise ModelError("the model has no LoRAMoE layers; call inject_loramoe first")
    return state


def count_trainable(model: nn.Module) -> tuple[int, int]:
    """(trainable parameters, all parameters) of `model`."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return trainable, total


def _save_safetensors_atomic(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    fd, tmp = temp_sibling(path)
    os.close(fd)
    try:
        cpu = {k: v.to("cpu").contiguous() for k, v in tensors.items()}
        save_file(cpu, tmp, metadata={"format": "pt"})  # one key: safetensors orders a map at random
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_loramoe(
    model: nn.Module,
    cfg: LoRAMoEConfig,
    directory: str | os.PathLike,
    base_model_name: str | None = None,
    base_model_fingerprint: dict[str, Any] | None = None,
) -> Path:
    """Write `adapter_model.safetensors` then `adapter_config.json` (each atomically) into `directory`."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    _save_safetensors_atomic(directory / WEIGHTS_NAME, loramoe_state_dict(model))
    d = cfg.to_dict(base_model_name_or_path=base_model_name)
    d["base_model_fingerprint"] = base_model_fingerprint
    write_json_atomic(directory / CONFIG_NAME, d)
    return directory


def read_adapter_config(directory: str | os.PathLike) -> dict[str, Any]:
    """The parsed `adapter_config.json` of `directory` (ModelError if missing or not JSON)."""
    path = Path(directory) / CONFIG_NAME
    if not path.is_file():
        raise ModelError(f"{directory}: no {CONFIG_NAME}; pass an adapter directory saved by forgetless")
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelError(f"{path}: cannot read adapter config ({exc}); the directory is damaged") from exc
    if not isinstance(d, dict):
        raise ModelError(f"{path}: adapter config is not a JSON object; the adapter directory is damaged")
    return d


def is_loramoe_adapter(directory: str | os.PathLike) -> bool:
    """True if `directory/adapter_config.json` says `"method": "loramoe"`."""
    try:
        return read_adapter_config(directory).get("method") == METHOD
    except ForgetlessError:
        return False


def _normalise(obj: Any) -> Any:
    return json.loads(json.dumps(obj, sort_keys=True))


def _mismatch(directory: Path, detail: str) -> ModelError:
    return ModelError(
        f"adapter {directory} was made for a different base model ({detail}); pass the base it was trained on"
    )


def _read_tensors(directory: Path) -> dict[str, torch.Tensor]:
    path = directory / WEIGHTS_NAME
    if not path.is_file():
        raise ModelError(f"{directory}: {WEIGHTS_NAME} is missing; the adapter directory is incomplete")
    try:
        with safe_open(str(path), framework="pt") as f:
            return {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open is not a dict)
    except Exception as exc:
        raise ModelError(f"{path}: cannot read adapter weights ({exc}); the file is damaged") from exc


def _expected_shapes(targets: list[tuple[str, nn.Linear]], cfg: LoRAMoEConfig) -> dict[str, tuple[int, ...]]:
    nr = cfg.num_experts * cfg.rank
    shapes: dict[str, tuple[int, ...]] = {}
    for name, lin in targets:
        shapes[f"{name}.lora_A"] = (nr, lin.in_features)
        shapes[f"{name}.lora_B"] = (lin.out_features, nr)
        shapes[f"{name}.router.weight"] = (cfg.num_experts, lin.in_features)
    return shapes


def _check_fit(directory: Path, tensors: dict[str, torch.Tensor], expected: dict[str, tuple[int, ...]]) -> None:
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise _mismatch(directory, f"missing tensors {missing[:3]}, unexpected tensors {unexpected[:3]}")
    for key, shape in expected.items():
        if tuple(tensors[key].shape) != shape:
            got = tuple(tensors[key].shape)
            raise _mismatch(directory, f"{key} has shape {got}, this base needs {shape}")


def load_loramoe(
    model: nn.Module, directory: str | os.PathLike, expected_fingerprint: dict[str, Any] | None = None
) -> nn.Module:
    """Inject LoRAMoE into `model` as configured in `directory` and load its weights strictly.

    The fingerprint (if both sides have one) and all tensor names/shapes are checked before the
    model is modified; any mismatch raises `ModelError`.
    """
    directory = Path(directory)
    d = read_adapter_config(directory)
    if d.get("method") != METHOD:
        raise ModelError(f"{directory}: method={d.get('method')!r}, not a LoRAMoE adapter")
    try:
        cfg = LoRAMoEConfig.from_dict(d)
    except ConfigError as exc:
        raise ModelError(f"{directory / CONFIG_NAME}: {exc}") from exc
    saved_fp = d.get("base_model_fingerprint")
    known = expected_fingerprint is not None and saved_fp is not None
    if known and _normalise(saved_fp) != _normalise(expected_fingerprint):
        raise _mismatch(directory, f"saved fingerprint {saved_fp}, this base {expected_fingerprint}")
    if loramoe_layers(model):
        raise ModelError(f"cannot load {directory}: the model already has LoRAMoE layers; pass a fresh base")
    try:
        targets = find_targets(model, cfg)
    except ConfigError as exc:
        raise _mismatch(directory, str(exc)) from exc
    tensors = _read_tensors(directory)
    _check_fit(directory, tensors, _expected_shapes(targets, cfg))
    inject_loramoe(model, cfg)
    with torch.no_grad():
        for name, layer in loramoe_layers(model):
            for key, param in layer.adapter_parameters().items():
                param.copy_(tensors[f"{name}.{key}"].to(device=param.device, dtype=param.dtype))
    return model
