"""Reading the files users name: regular files only, the size checked first, every read capped.

A FIFO would block forever, /dev/zero or /dev/urandom never end, a sparse file can claim gigabytes
and /proc files claim zero bytes; each is refused or bounded here with a one-line error naming the
file, never read whole. Every reader (catalog, importers, logs, plans, project files) goes through
this module.
"""

from __future__ import annotations

import errno
import json
import math
import os
import stat
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from vramcalc.errors import VramcalcError
from vramcalc.limits import MAX_JSON_DEPTH, MAX_JSON_INT_DIGITS

if TYPE_CHECKING:
    from collections.abc import Iterator

_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def _kind_of(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def size_text(n_bytes: int) -> str:
    """A limit as people write it: 1 MB, 16 MiB, else bytes."""
    if n_bytes % 10**6 == 0:
        return f"{n_bytes // 10**6:,} MB"
    if n_bytes % 2**20 == 0:
        return f"{n_bytes // 2**20:,} MiB"
    return f"{n_bytes:,} bytes"


def reason(exc: OSError) -> str:
    """The words for an OSError: its strerror ('File name too long', 'No space left on device')."""
    return exc.strerror or str(exc)


def kind(path: Path) -> str:
    """'file', 'dir', 'missing' (also: unreachable, a name too long, a symlink loop, no permission
    to look) or 'special' (FIFO, device, socket). Never raises: it is how callers probe names."""
    try:
        mode = path.stat().st_mode
    except (OSError, ValueError):  # ValueError: a NUL byte in the name
        return "missing"
    if stat.S_ISREG(mode):
        return "file"
    return "dir" if stat.S_ISDIR(mode) else "special"


def is_file(path: Path) -> bool:
    return kind(path) == "file"


def is_dir(path: Path) -> bool:
    return kind(path) == "dir"


def expand_user(text: str, error: type[VramcalcError] = VramcalcError) -> Path:
    """`~/x` and `~user/x` expanded; an unknown user (or no home directory) is a one-line error."""
    try:
        return Path(text).expanduser()
    except RuntimeError:
        user = text.split("/", 1)[0]
        raise error(
            f"{text}: {user} is not a user with a home directory here; give the path in full"
        ) from None


@contextmanager
def open_regular(
    path: Path, limit: int, what: str, error: type[VramcalcError] = VramcalcError
) -> Iterator[tuple[IO[bytes], int]]:
    """(binary file, size) of a regular file at most `limit` bytes long.

    Opened without blocking (a FIFO opens at once instead of waiting for a writer), then checked
    on the open descriptor itself, so what is read is what was checked.
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except (OSError, ValueError) as exc:
        why = reason(exc) if isinstance(exc, OSError) else "a NUL byte in the name"
        if isinstance(exc, OSError) and exc.errno == errno.ENOENT:
            why = "no such file"
        raise error(f"{path}: cannot read the {what} ({why})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise error(f"{path}: is {_kind_of(st.st_mode)}, not a regular file; a {what} must be a file")
        if st.st_size > limit:
            raise error(f"{path}: {st.st_size:,} bytes is too large for a {what} (limit {size_text(limit)})")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        f = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    with f:
        yield f, st.st_size


def read_bytes(path: Path, limit: int, what: str, error: type[VramcalcError] = VramcalcError) -> bytes:
    """A regular file's bytes, at most `limit` (a file that grows past it while read is refused)."""
    with open_regular(path, limit, what, error) as (f, _):
        try:
            data = f.read(limit + 1)
        except OSError as exc:
            raise error(f"{path}: cannot read the {what} ({reason(exc)})") from None
    if len(data) > limit:
        raise error(f"{path}: more than {size_text(limit)}; too large for a {what}")
    return data


def read_text(path: Path, limit: int, what: str, error: type[VramcalcError] = VramcalcError) -> str:
    """A regular file as UTF-8 text (a BOM is dropped), at most `limit` bytes."""
    data = read_bytes(path, limit, what, error)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise error(f"{path}: not UTF-8 text (bad byte at offset {exc.start:,}); a {what} is text") from None


class _JsonShape(ValueError):
    """A JSON value vramcalc refuses (too deep, a huge integer, NaN or infinity)."""


def _int(text: str) -> int:
    digits = len(text.lstrip("-"))
    if digits > MAX_JSON_INT_DIGITS:
        raise _JsonShape(f"an integer with {digits:,} digits (at most {MAX_JSON_INT_DIGITS})")
    return int(text)


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _JsonShape(f"the number {text[:24]}{'...' if len(text) > 24 else ''} is out of range")
    return value


def _constant(text: str) -> float:
    raise _JsonShape(f"{text} is not a number JSON allows")


def _depth(value: Any) -> int:
    """Nesting depth of parsed JSON, without recursion."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, depth)
            if depth <= MAX_JSON_DEPTH:
                stack += [(v, depth + 1) for v in (item.values() if isinstance(item, dict) else item)]
    return deepest


def parse_json(text: str | bytes, where: str, what: str, error: type[VramcalcError] = VramcalcError) -> Any:
    """JSON with every number finite and integers of at most 20 digits, nested at most 64 deep."""
    try:
        value = json.loads(text, parse_int=_int, parse_float=_float, parse_constant=_constant)
    except _JsonShape as exc:
        raise error(f"{where}: {exc}; not a {what}") from None
    except RecursionError:
        raise error(f"{where}: JSON nested deeper than {MAX_JSON_DEPTH} levels; not a {what}") from None
    except json.JSONDecodeError as exc:
        raise error(f"{where}:{exc.lineno}: not valid JSON ({exc.msg}); expected a {what}") from None
    except UnicodeDecodeError as exc:
        raise error(
            f"{where}: not UTF-8 text (bad byte at offset {exc.start:,}); expected a {what}"
        ) from None
    if _depth(value) > MAX_JSON_DEPTH:
        raise error(f"{where}: JSON nested deeper than {MAX_JSON_DEPTH} levels; not a {what}")
    return value


def short(value: object, limit: int = 60) -> str:
    """repr() cut to `limit` characters, for error messages about hostile values."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**30:
        return f"an integer of about {int(abs(value).bit_length() * 0.30103) + 1:,} digits"
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
