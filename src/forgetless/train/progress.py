"""Training progress in forgetless' one progress style: a rich bar with the latest loss, instead of the
Trainer's tqdm bar and its `{'loss': ...}` dicts printed on stdout.

    trainer = build_trainer(...)        # installs it: TrainingArguments(disable_tqdm=True) plus this callback
    trainer.train()

Only the main process draws (under DDP every rank runs the callbacks). The log history itself is
unchanged: `trainer.state.log_history` and the adapter's `train_log.jsonl` keep every logged value.
"""

from __future__ import annotations

from typing import Any

from transformers import TrainerCallback


class RichProgressCallback(TrainerCallback):
    """One row "training (loss 1.234)" with steps done / total, elapsed time and ETA."""

    def __init__(self, description: str = "training") -> None:
        self.description = description
        self._context: Any = None
        self._bar: Any = None
        self._task: Any = None
        self._nested = False

    def on_train_begin(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        from forgetless.utils.console import nested_progress, progress

        self._nested = nested_progress()
        self._context = progress()
        self._bar = self._context.__enter__()
        self._task = self._bar.add_task(self.description, total=state.max_steps, completed=state.global_step)

    def on_step_end(self, args, state, control, **kwargs):
        if self._bar is not None:
            self._bar.update(self._task, completed=state.global_step)

    def on_log(self, args, state, control, logs=None, **kwargs):
        loss = (logs or {}).get("loss")
        if self._bar is not None and isinstance(loss, int | float):
            self._bar.update(self._task, description=f"{self.description} (loss {loss:.4g})")

    def on_train_end(self, args, state, control, **kwargs):
        self.close()

    def close(self, failed: bool = False) -> None:
        """End the bar; a bar nested in another display leaves it. When training failed, the bar vanishes
        (the error then stays the one line on stderr)."""
        if self._bar is None:
            return
        if self._nested:
            self._bar.remove_task(self._task)
        error = RuntimeError("training failed") if failed else None
        self._context.__exit__(type(error) if error else None, error, None)
        self._bar = self._context = None


def quiet_trainer(trainer) -> None:
    """Swap the Trainer's stdout printer / tqdm callbacks for the rich bar."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    trainer.add_callback(RichProgressCallback())
