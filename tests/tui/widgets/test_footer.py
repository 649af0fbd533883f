"""KeysFooter: the keys it shows follow the focus through every view, as
Textual's Footer would show them, relabelling the key widgets it already has."""

from __future__ import annotations

from textual.widgets._footer import FooterKey
from tui_helpers import SIZE, ready

from tui.app import TorchscopeApp
from tui.views import VIEWS
from tui.widgets.footer import KeysFooter


def _expected(app: TorchscopeApp) -> list[tuple[str, str, bool]]:
    """What Footer.compose shows for the screen's bindings now: one key per
    action, the first bound, then the command palette's."""
    screen = app.screen
    keys: dict[str, tuple[str, str, bool]] = {}
    for _, binding, enabled, _ in screen.active_bindings.values():
        if binding.show and binding.action not in keys:
            keys[binding.action] = (app.get_key_display(binding), binding.description, enabled)
    shown = list(keys.values())
    palette = screen.active_bindings.get(app.COMMAND_PALETTE_BINDING)
    if app.ENABLE_COMMAND_PALETTE and palette is not None:
        _, binding, enabled, _ = palette
        shown.append((app.get_key_display(binding), binding.description, enabled))
    return shown


def _shown(footer: KeysFooter) -> list[tuple[str, str, bool]]:
    keys = [k for k in footer.query_children(FooterKey) if k.display]
    keys.sort(key=lambda k: k.has_class("-command-palette"))  # docked right: last
    return [(k.key_display, k.description, not k._disabled) for k in keys]


async def test_footer_shows_the_focused_views_keys_and_reuses_its_widgets(sample):
    app = TorchscopeApp(sample)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        footer = app.screen.query_one(KeysFooter)
        made: set[int] = set()
        descriptions = set()
        for round_ in range(2):
            for view in [*VIEWS[1:], VIEWS[0]]:
                await pilot.press(str(VIEWS.index(view) + 1))
                await ready(pilot)
                assert _shown(footer) == _expected(app), view.ID
                keys = {id(k) for k in footer.query_children(FooterKey)}
                if round_ == 0:
                    made |= keys
                    descriptions |= {d for _, d, _ in _shown(footer)}
                else:
                    assert keys <= made, "a revisit mounts no new key widget"
        assert {"Search", "Show in Calls", "Quit"} <= descriptions
