"""Widgets that own the behaviour of each pane (tree, details, source, timeline)."""
