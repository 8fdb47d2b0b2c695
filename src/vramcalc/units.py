"""Byte-unit constants and the only place bytes become human-readable strings."""

from __future__ import annotations

KIB = 1024
MIB = 1024**2
GIB = 1024**3
GB = 10**9


def gib(n_bytes: int | float) -> float:
    """Bytes as binary gibibytes (what nvidia-smi's MiB figures add up to)."""
    return n_bytes / GIB


def fmt_gib(n_bytes: int | float, digits: int = 2) -> str:
    """Bytes as a 'GiB' string, e.g. 15891148800 -> '14.80 GiB'."""
    return f"{n_bytes / GIB:,.{digits}f} GiB"


def fmt_count(n: int) -> str:
    """A large count in billions or millions, e.g. 27227128320 -> '27.23 B'."""
    if n >= 10**9:
        return f"{n / 1e9:.2f} B"
    return f"{n / 1e6:.1f} M"


def plural(n: int, word: str, many: str | None = None) -> str:
    """'1 user', '2 users', '1,024 tokens': the count with the word in the number it needs."""
    return f"{n:,} {word if n == 1 else many or word + 's'}"
