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


async def test_keys_wider_than_the_screen_scroll_with_the_wheel():
    """The footer's scrollbar (zero-sized) never comes and goes, which laid the
    screen out a second time at a view switch; the wheel still scrolls keys
    that do not fit, and only those."""
    from textual import events
    from tui_helpers import SAMPLE

    from tui.widgets.footer import RelabelledKey

    app = TorchscopeApp(str(SAMPLE))
    async with app.run_test(size=(60, 24)) as pilot:
        await ready(pilot)
        footer = app.screen.query_one(KeysFooter)
        keys = list(footer.query_children(FooterKey))
        assert keys and all(isinstance(k, RelabelledKey) for k in keys)
        assert footer.virtual_size.width > footer.size.width  # the Calls keys do not fit
        assert footer.allow_horizontal_scroll and not footer.show_horizontal_scrollbar
        footer.post_message(events.MouseScrollDown(footer, 1, 0, 0, 1, 0, False, False, False))
        await pilot.pause()
        await pilot.wait_for_scheduled_animations()
        assert footer.scroll_x > 0
        await pilot.resize_terminal(240, 24)
        await ready(pilot)
        assert footer.virtual_size.width <= footer.size.width
        assert not footer.allow_horizontal_scroll and not footer.show_horizontal_scrollbar


async def test_a_view_switch_relabels_the_keys_in_its_own_handler(sample):
    """The keys change with the tab, not after it: the screen is then laid out
    once for both (the keys' widths came a frame later, a second layout)."""
    app = TorchscopeApp(sample)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        footer = app.screen.query_one(KeysFooter)
        for view in [*VIEWS[1:], VIEWS[0]]:  # every view's keys mounted once
            await pilot.press(str(VIEWS.index(view) + 1))
            await ready(pilot)
        for view in [*VIEWS[1:], VIEWS[0]]:
            app.screen.action_show_view(view.ID)  # no await: nothing else has run
            assert _shown(footer) == _expected(app), view.ID
            await ready(pilot)
            assert _shown(footer) == _expected(app), view.ID
