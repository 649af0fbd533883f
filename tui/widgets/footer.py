"""The footer of keys, relabelled in place and only when the keys it shows change.

Textual's Footer rebuilds all its key widgets each time the screen's bindings
are updated (every focus change, several times in one view switch) and after
the next refresh: a switch painted the screen twice (the view, then the keys),
and each rebuild removed, mounted and styled a dozen widgets, restyling each
twice more (its ``compact`` flag is set, then bound to the footer's). Together
about a third of a view switch's CPU on a million spans.
"""

from __future__ import annotations

from collections.abc import Hashable

from textual.compose import compose
from textual.geometry import Size
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Footer
from textual.widgets._footer import FooterKey

_FLAGS = ("-disabled", "-grouped", "-command-palette")  # classes FooterKey is made with
_LOOKS = 32  # key sets remembered (views x focus x enabled keys: a handful in this app)


class _SizedOnce:
    """A widget whose scrollable size is never news: Textual lays the screen out
    again when a widget's scrollable size changes in a layout, but a footer key's
    is its own size, and the footer's (its keys' widths) moves no other widget.
    A view switch that relabels the keys was laid out twice."""

    def _size_updated(
        self, size: Size, virtual_size: Size, container_size: Size, layout: bool = True
    ) -> bool:
        return super()._size_updated(  # type: ignore[misc]
            size, virtual_size, container_size, layout=False
        )


class RelabelledKey(_SizedOnce, FooterKey):
    """A key widget of ``KeysFooter`` (Footer's CSS applies: it is a FooterKey)."""


class KeysFooter(_SizedOnce, Footer):
    """A Footer whose key widgets take the new keys when the keys differ,
    in the same paint as the focus change that changed them."""

    # Keys wider than the screen scroll with the wheel, as in Footer, but their
    # (zero-sized) scrollbar never comes and goes: that asked for a layout too.
    DEFAULT_CSS = "KeysFooter { overflow-x: hidden; }"

    @property
    def allow_horizontal_scroll(self) -> bool:
        return not self._check_disabled() and self.max_scroll_x > 0

    _shown: Hashable = None  # the key set the key widgets show now
    _pending = False  # a check that mounts widgets is queued

    def on_mount(self) -> None:
        super().on_mount()
        self._looks: dict[Hashable, list[Widget]] = {}  # key set -> what compose makes of it

    def _keys(self) -> Hashable:
        """Everything Footer.compose reads, as one comparable value."""
        palette = self.app.COMMAND_PALETTE_BINDING
        return (
            self.show_command_palette,
            self.app.ENABLE_COMMAND_PALETTE,
            tuple(
                (key, binding, enabled, tooltip)
                for key, (_, binding, enabled, tooltip) in self.screen.active_bindings.items()
                if binding.show or key == palette
            ),
        )

    def bindings_changed(self, screen: Screen) -> None:
        self._bindings_ready = True
        if not screen.app.app_focus or not self.is_attached or screen is not self.screen:
            return
        keys = self._keys()
        if keys == self._shown or self._pending:
            return
        wanted = self._look(keys)
        have = list(self.children)
        if _keys_only(have, wanted) and _fits(have, wanted):
            self._shown = keys
            self._relabel(have, wanted)
        else:  # widgets to mount: after this message, as Footer does
            self._pending = True
            self.call_later(self._rebuild)

    def _look(self, keys: Hashable) -> list[Widget]:
        """What Footer.compose makes for ``keys`` (templates, never mounted)."""
        if keys not in self._looks:
            if len(self._looks) >= _LOOKS:
                self._looks.clear()
            with self._context():  # Footer.compose binds the keys to the footer's reactives
                self._looks[keys] = compose(self)
        return self._looks[keys]

    async def _rebuild(self) -> None:
        self._pending = False
        if not self.is_attached:
            return
        keys = self._keys()
        if keys == self._shown:
            return
        self._shown = keys
        have, wanted = list(self.children), self._look(keys)
        if not _keys_only(have, wanted):  # key groups (none in this app): Footer's rebuild
            await self.recompose()
            return
        extra = self._relabel(have, wanted)
        if extra:
            await self.mount_all(self._copies(extra))

    def _relabel(self, have: list[Widget], wanted: list[Widget]) -> list[FooterKey]:
        """The mounted key widgets take the wanted keys in order (the command
        palette's key its own) and the ones left over hide; returns the wanted
        keys that had no widget to take them."""
        extra: list[FooterKey] = []
        with self.app.batch_update():
            for palette in (False, True):
                old = [w for w in have if w.has_class("-command-palette") == palette]
                new = [w for w in wanted if w.has_class("-command-palette") == palette]
                for key, look in zip(old, new):
                    _take(key, look)  # type: ignore[arg-type]
                    key.display = True
                for key in old[len(new) :]:
                    key.display = False
                extra += new[len(old) :]  # type: ignore[arg-type]
        return extra

    def _copies(self, looks: list[FooterKey]) -> list[FooterKey]:
        """Fresh key widgets for templates (a template itself is never mounted),
        made as Footer.compose makes them: all but the palette's follow ``compact``."""
        made = []
        for k in looks:
            palette = k.has_class("-command-palette")
            key = RelabelledKey(
                k.key,
                k.key_display,
                k.description,
                k.action,
                disabled=k._disabled,
                tooltip=k.tooltip or "",  # type: ignore[arg-type]
                classes=" ".join(c for c in ("-grouped", "-command-palette") if k.has_class(c)),
            )
            made.append(key if palette else key.data_bind(compact=KeysFooter.compact))
        return made


def _keys_only(*lists: list[Widget]) -> bool:
    return all(type(w) in (FooterKey, RelabelledKey) for widgets in lists for w in widgets)


def _fits(have: list[Widget], wanted: list[Widget]) -> bool:
    """Whether every wanted key has a mounted widget to take it."""
    return all(
        sum(w.has_class("-command-palette") == p for w in have)
        >= sum(w.has_class("-command-palette") == p for w in wanted)
        for p in (False, True)
    )


def _take(key: FooterKey, look: FooterKey) -> None:
    """Makes a mounted key widget show what ``look`` shows."""
    shown = (look.key, look.key_display, look.description, look.action, look._disabled)
    if (*shown, look.tooltip) != _label(key):
        key.key, key.key_display, key.description, key.action, key._disabled = shown
        key.tooltip = look.tooltip
        key.refresh(layout=True)  # its width follows its label
    key.update_classes({flag: look.has_class(flag) for flag in _FLAGS})


def _label(key: FooterKey) -> tuple:
    return (key.key, key.key_display, key.description, key.action, key._disabled, key.tooltip)
