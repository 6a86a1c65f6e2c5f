"""Adapter methods: LoRA (through peft), LoRAMoE, and the SwitchCIT switch."""
