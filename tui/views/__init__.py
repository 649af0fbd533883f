"""The views of the main screen, one tab each, in tab order."""

from __future__ import annotations

from tui.views.base import View
from tui.views.calls import CallsView
from tui.views.findings import FindingsView
from tui.views.imports import ImportsView
from tui.views.modules import ModulesView
from tui.views.stats import StatsView

VIEWS: list[type[View]] = [CallsView, ModulesView, StatsView, FindingsView, ImportsView]

__all__ = ["VIEWS", "CallsView", "FindingsView", "ImportsView", "ModulesView", "StatsView", "View"]
