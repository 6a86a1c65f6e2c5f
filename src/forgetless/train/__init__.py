"""Training: config, the Trainer subclass with label-only logits, and the end-to-end `train()` run."""
