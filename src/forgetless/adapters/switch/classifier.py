"""The SwitchCIT switch head: a small MLP from prompt features to task ids.

    from forgetless.adapters.switch.classifier import SwitchHead
    head = SwitchHead(in_dim=384, num_tasks=2)          # Linear(384→200) → ReLU → Linear(200→2)
    head.fit(features, labels)                          # AdamW lr 1e-3, batch 32, 20 epochs, seeded
    probs = head.predict_proba(features)                # [n, num_tasks], rows sum to 1

Defaults are the official SwitchCIT ones. Training is deterministic for a given `seed` and does not
touch the global torch RNG.

Growing the task set: `fit` with a label >= `num_tasks` (or an explicit `grow(n)`) EXPANDS the output
layer: the rows of the known tasks keep their weights and the new rows are freshly initialised, so a
retrain after a new task warm-starts from the previous head. Pass `reset=True` to `fit` to re-initialise
the whole head instead (the same head a from-scratch training would give). The switch retrains on all
of its data either way (the new task's prompts plus the rehearsal memory of earlier tasks).
"""

from __future__ import annotations

from typing import Any

from forgetless.errors import ConfigError, DataError

OFFICIAL_HIDDEN = 200
OFFICIAL_LR = 1e-3
OFFICIAL_BATCH = 32
OFFICIAL_EPOCHS = 20


def _build(in_dim: int, hidden: int, num_tasks: int) -> Any:
    import torch

    return torch.nn.Sequential(torch.nn.Linear(in_dim, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, num_tasks))


class SwitchHead:
    """Linear(in_dim→hidden) → ReLU → Linear(hidden→num_tasks), trained with cross-entropy."""

    def __init__(
        self,
        in_dim: int,
        num_tasks: int = 1,
        hidden: int = OFFICIAL_HIDDEN,
        lr: float = OFFICIAL_LR,
        batch_size: int = OFFICIAL_BATCH,
        epochs: int = OFFICIAL_EPOCHS,
        seed: int = 0,
        balanced: bool = False,
    ):
        for label, value in (("in_dim", in_dim), ("num_tasks", num_tasks), ("hidden", hidden)):
            if int(value) < 1:
                raise ConfigError(f"switch head {label} must be >= 1, got {value}")
        if lr <= 0 or batch_size < 1 or epochs < 1:
            raise ConfigError(
                f"switch head needs lr > 0, batch_size >= 1, epochs >= 1 (got {lr}, {batch_size}, {epochs})"
            )
        self.in_dim, self.hidden = int(in_dim), int(hidden)
        self.lr, self.batch_size, self.epochs, self.seed = float(lr), int(batch_size), int(epochs), int(seed)
        self.balanced = bool(balanced)
        self.net = self._init_net(int(num_tasks), self.seed)

    @property
    def num_tasks(self) -> int:
        """Number of outputs (task ids 0..num_tasks-1)."""
        return int(self.net[2].out_features)

    def _init_net(self, num_tasks: int, seed: int) -> Any:
        import torch

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return _build(self.in_dim, self.hidden, num_tasks)

    def grow(self, num_tasks: int) -> None:
        """Expand the output layer to `num_tasks` rows, keeping the rows of the known tasks."""
        import torch

        old = self.net[2]
        if num_tasks <= old.out_features:
            return
        fresh = self._init_net(num_tasks, self.seed + num_tasks)[2]
        with torch.no_grad():
            fresh.weight[: old.out_features] = old.weight
            fresh.bias[: old.out_features] = old.bias
        self.net[2] = fresh

    def _check(self, features: Any) -> Any:
        import torch

        features = torch.as_tensor(features, dtype=torch.float32)
        if features.ndim != 2 or features.shape[1] != self.in_dim:
            raise DataError(f"switch head expects features [n, {self.in_dim}], got {list(features.shape)}")
        return features

    def _loss(self, labels: Any) -> Any:
        import torch

        if not self.balanced:
            return torch.nn.CrossEntropyLoss()
        counts = torch.bincount(labels, minlength=self.num_tasks).float()
        weights = torch.where(counts > 0, counts.sum() / (counts.clamp(min=1) * (counts > 0).sum()), 0.0)
        return torch.nn.CrossEntropyLoss(weight=weights)

    def fit(self, features: Any, labels: Any, reset: bool = False) -> list[float]:
        """Train on (features [n, in_dim], integer labels [n]); returns the mean loss of each epoch."""
        import torch

        features = self._check(features)
        labels = torch.as_tensor(labels, dtype=torch.long)
        if labels.ndim != 1 or len(labels) != len(features) or len(labels) == 0:
            raise DataError(f"switch head needs one label per feature row, got {len(labels)} for {len(features)}")
        if int(labels.min()) < 0:
            raise DataError("switch head labels must be task ids >= 0")
        needed = max(self.num_tasks, int(labels.max()) + 1)
        if reset:
            self.net = self._init_net(needed, self.seed)
        self.grow(needed)
        return self._train(features, labels)

    def _train(self, features: Any, labels: Any) -> list[float]:
        import torch

        loss_fn, gen = self._loss(labels), torch.Generator().manual_seed(self.seed)
        optimizer = torch.optim.AdamW(self.net.parameters(), lr=self.lr)
        self.net.train()
        history = []
        for _ in range(self.epochs):
            order, total = torch.randperm(len(labels), generator=gen), 0.0
            for start in range(0, len(order), self.batch_size):
                idx = order[start : start + self.batch_size]
                loss = loss_fn(self.net(features[idx]), labels[idx])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                total += loss.item() * len(idx)
            history.append(total / len(labels))
        self.net.eval()
        return history

    def logits(self, features: Any) -> Any:
        """Raw scores [n, num_tasks]."""
        import torch

        with torch.no_grad():
            return self.net(self._check(features))

    def predict_proba(self, features: Any) -> Any:
        """Softmax probabilities [n, num_tasks]."""
        return self.logits(features).softmax(dim=-1)

    def predict(self, features: Any) -> Any:
        """Most likely task id per row."""
        return self.logits(features).argmax(dim=-1)

    def config(self) -> dict[str, Any]:
        """The hyper-parameters needed to rebuild this head (saved in switch.json)."""
        keys = ("in_dim", "hidden", "lr", "batch_size", "epochs", "seed", "balanced")
        return {key: getattr(self, key) for key in keys} | {"num_tasks": self.num_tasks}

    def state_tensors(self) -> dict[str, Any]:
        """Contiguous CPU copies of the weights, ready for safetensors."""
        return {k: v.detach().cpu().contiguous().clone() for k, v in self.net.state_dict().items()}

    @classmethod
    def from_state(cls, config: dict[str, Any], tensors: dict[str, Any]) -> SwitchHead:
        """Rebuild a head saved with `config()` and `state_tensors()`."""
        head = cls(**config)
        try:
            head.net.load_state_dict(tensors)
        except RuntimeError as exc:
            raise DataError(f"switch head weights do not match its config: {str(exc).splitlines()[0]}") from exc
        head.net.eval()
        return head
