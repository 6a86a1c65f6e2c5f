"""Data: instruction records (files or hub datasets), chat formatting with answer-only labels, facts, tasks."""
