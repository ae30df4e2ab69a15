"""The text kit every renderer shares: escaping names, measuring and wrapping cells, widths.

Names come from user code (module paths, class names, checkpoint keys) and may hold anything:
rich markup (``[bold red]x``, ``[/]``), terminal escape sequences, bidirectional overrides
(U+202E), newlines. :func:`escape_text` makes such text inert and visible for every format;
rich renderers additionally wrap it in :func:`plain` (a ``rich.text.Text``, never parsed as
markup). Cells are measured in terminal cells (rich's own measure) and wrapped only at
separators (``.``, ``,``, space), so a digit, a shape or a name is never cut.

>>> escape_text("a\\nb\\u202ec")
'a\\\\nb\\\\u202ec'
>>> wrap_cell("[2, 8, 4096], [2, 8, 40960]", 10)
['[2, 8, 4096],', '[2, 8, 40960]']
"""

from __future__ import annotations

import os
import re
import sys
import unicodedata
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.text import Text

#: The width of fixed-width renderings (golden files, HTML, text of a rich renderable).
WIDTH = 100

__all__ = [
    "WIDTH",
    "cell_width",
    "escape_as",
    "escape_markdown",
    "escape_text",
    "min_wrap_width",
    "plain",
    "terminal_width",
    "wrap_cell",
    "wrap_words",
]

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
# control, format (bidi overrides, zero-width), line/paragraph separators, surrogates
_HIDDEN = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})


def escape_text(text: str) -> str:
    """``text`` with every invisible or terminal-controlling character written as an escape.

    Newlines, tabs, escape sequences, bidirectional overrides and zero-width characters would
    reorder, recolour or split a table; they are shown as ``\\n``, ``\\x1b``, ``\\u202e``.

    Args:
        text: a name or value from user code.

    Returns:
        The same text when it is printable; otherwise the text with those characters escaped.

    >>> escape_text("features.0"), escape_text("x\\x1b[31m")
    ('features.0', 'x\\\\x1b[31m')
    """
    if text.isprintable():
        return text
    out: list[str] = []
    for ch in text:
        if ch in _NAMED:
            out.append(_NAMED[ch])
        elif unicodedata.category(ch) in _HIDDEN:
            code = ord(ch)
            out.append(f"\\x{code:02x}" if code < 0x100 else
                       f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}")
        else:
            out.append(ch)
    return "".join(out)


# a backslash before ASCII punctuation is a Markdown escape; before anything else it is shown
_MD_BACKSLASH = re.compile(r"\\(?=[!-/:-@\[-`{-~])")


def escape_markdown(text: str) -> str:
    r""":func:`escape_text` for a Markdown table cell, shown by a viewer as written: ``&``
    written ``&amp;`` (``&#8238;`` or ``&lt;`` would be decoded), ``|``, ``<`` (an HTML tag),
    ``*``, backticks and a backslash before punctuation made literal.

    >>> print(escape_markdown("a|b"), escape_markdown("<h>"), escape_markdown("x&#8238;"))
    a\|b \<h> x&amp;#8238;
    """
    out = _MD_BACKSLASH.sub(r"\\\\", escape_text(text)).replace("&", "&amp;")
    for ch in "|<*`":
        out = out.replace(ch, "\\" + ch)
    return out


def escape_as(text: str, fmt: str) -> str:
    """``text`` escaped for the output format ``fmt``: :func:`escape_markdown` for
    ``markdown``, :func:`escape_text` for every other format (rich shows it with :func:`plain`).

    >>> escape_as("a|b\\x1b", "markdown"), escape_as("a|b", "text")
    ('a\\\\|b\\\\x1b', 'a|b')
    """
    return escape_markdown(text) if fmt == "markdown" else escape_text(text)


def plain(text: str, style: str | None = None) -> Text:
    """A rich ``Text`` of the escaped ``text``: shown as written, never parsed as markup.

    >>> plain("[bold red]x").plain
    '[bold red]x'
    """
    from rich.text import Text

    return Text(escape_text(text), style=style or "")


def cell_width(text: str) -> int:
    """Width of ``text`` in terminal cells (wide characters count 2), its widest line.

    >>> cell_width("ab"), cell_width("a\\nbcd")
    (2, 3)
    """
    from rich.cells import cell_len

    return max((cell_len(line) for line in text.split("\n")), default=0)


# a shape ([2, 8, 4096]) is never split; elsewhere a piece ends after ", ", ",", "." or " "
_SHAPE = re.compile(r"\[(?:[0-9]+(?:, [0-9]+)*)?\]")


def _pieces(text: str) -> list[str]:
    out: list[str] = []
    current = ""
    i = 0
    while i < len(text):
        shape = _SHAPE.match(text, i)
        if shape:
            current += shape.group()
            i = shape.end()
            continue
        ch = text[i]
        current += ch
        i += 1
        if ch in ".,":
            if i < len(text) and text[i] == " ":
                current += " "
                i += 1
            out.append(current)
            current = ""
        elif ch == " ":
            out.append(current)
            current = ""
    if current:
        out.append(current)
    return out


def min_wrap_width(text: str) -> int:
    """The narrowest width :func:`wrap_cell` can wrap ``text`` to (its longest piece).

    >>> min_wrap_width("features.1.num_batches_tracked")
    19
    """
    return max((cell_width(p.rstrip(" ")) for p in _pieces(text)), default=0)


def wrap_cell(text: str, width: int) -> list[str]:
    """Lines of ``text`` no wider than ``width``, broken only after ``.``, ``,`` or a space.

    A piece wider than ``width`` stays whole on its own line: nothing is ever cut.

    Args:
        text: a cell (a shape, a qualified name, a dtype list).
        width: the column width in terminal cells.

    Returns:
        The lines, trailing spaces removed.

    >>> wrap_cell("features.1.num_batches_tracked", 12)
    ['features.1.', 'num_batches_tracked']
    """
    if cell_width(text) <= width:
        return [text]
    lines: list[str] = []
    current = ""
    for piece in _pieces(text):
        if current and cell_width((current + piece).rstrip(" ")) > width:
            lines.append(current.rstrip(" "))
            current = piece
        else:
            current += piece
    if current.strip(" ") or not lines:
        lines.append(current.rstrip(" "))
    return lines


def wrap_words(text: str, width: int, *, indent: str = "", first: str = "") -> list[str]:
    """``text`` wrapped at spaces to ``width``; a word (an identifier, a call) is never split.

    >>> wrap_words("use save_model(model, path) instead", 12)
    ['use', 'save_model(model,', 'path)', 'instead']
    """
    import textwrap

    return textwrap.wrap(text, max(width, 1), initial_indent=first, subsequent_indent=indent,
                         break_long_words=False, break_on_hyphens=False) or [first.rstrip()]


def terminal_width(file: Any = None) -> int | None:
    """Columns of the terminal ``file`` (stdout by default) writes to; ``None`` when piped.

    ``COLUMNS`` in the environment wins (as for every terminal program).

    >>> terminal_width(file=__import__("io").StringIO()) is None or "COLUMNS" in os.environ
    True
    """
    env = os.environ.get("COLUMNS", "")
    if env.isdigit() and int(env) > 0:
        return int(env)
    stream = file if file is not None else sys.stdout
    try:
        if stream.isatty():
            return os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, OSError, ValueError):
        return None
    return None


def widest_line(lines: Sequence[str]) -> int:
    """The widest of ``lines`` in terminal cells.

    >>> widest_line(["a", "abc"])
    3
    """
    return max((cell_width(line) for line in lines), default=0)


__all__ += ["widest_line"]
