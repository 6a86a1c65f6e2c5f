"""Evaluation: text metrics (exact match, token F1, ROUGE-L, SARI) and continual-learning metrics
(average accuracy, backward/forward transfer, forgetting) in `forgetless.eval.metrics`."""
