"""Humanized numbers, shared by finding messages (analyses) and every renderer.

>>> humanize_count(7946), humanize_bytes(32104)
('7.9 K', '31.4 KiB')
"""

from __future__ import annotations

__all__ = ["UNKNOWN", "humanize_bytes", "humanize_count", "short_repr"]

#: How every renderer shows a number that is not known (lazy, data-dependent).
UNKNOWN = "?"


def humanize_count(n: int | None) -> str:
    """``7946`` -> ``7.9 K``; ``124439808`` -> ``124.4 M``; numbers below 1,000 stay exact.

    >>> humanize_count(7946), humanize_count(999), humanize_count(None)
    ('7.9 K', '999', '?')
    """
    if n is None:
        return UNKNOWN
    if abs(n) < 1000:
        return str(n)
    for unit, scale in (("T", 10**12), ("B", 10**9), ("M", 10**6), ("K", 10**3)):
        if abs(n) >= scale:
            value = n / scale
            return f"{value:.1f} {unit}" if value < 999.95 else f"{value:.0f} {unit}"
    return str(n)  # pragma: no cover


def humanize_bytes(n: int | None) -> str:
    """``32104`` -> ``31.4 KiB``; bytes below 1 KiB stay exact (``512 B``).

    >>> humanize_bytes(32104), humanize_bytes(512)
    ('31.4 KiB', '512 B')
    """
    if n is None:
        return UNKNOWN
    if abs(n) < 1024:
        return f"{n} B"
    value = float(n)
    for unit in ("KiB", "MiB", "GiB", "TiB", "PiB"):
        value /= 1024
        if abs(value) < 1024 or unit == "PiB":
            return f"{value:.1f} {unit}"
    return f"{n} B"  # pragma: no cover


def short_repr(value: object, limit: int = 40) -> str:
    """``repr(value)``, cut to ``limit`` characters (for error messages that quote a value).

    >>> short_repr("x" * 50)
    "'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx..."
    """
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
