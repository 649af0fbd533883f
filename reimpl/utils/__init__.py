"""Mirrors ``torch/utils``: the pieces reimpl needs (hooks)."""
