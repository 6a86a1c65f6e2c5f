"""LoRA through peft, registered as adapter method `lora` (see `forgetless.adapters.base`)."""

from forgetless.adapters.lora.method import LoraMethod

__all__ = ["LoraMethod"]
