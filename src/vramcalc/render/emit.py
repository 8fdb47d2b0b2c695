"""Show launches for `plan emit` as shell text: files, environment and engine commands."""

from __future__ import annotations

import shlex
from typing import TYPE_CHECKING, Any

from vramcalc.render.common import plain
from vramcalc.units import plural

if TYPE_CHECKING:
    from vramcalc.core.emit import Command, Launch


def _shell_command(c: Command) -> str:
    """Environment, the program, then one flag (with its value) per line, joined with backslashes."""
    lines = [f"{k}={shlex.quote(v)}" for k, v in c.env] + [shlex.join(c.program)]
    rest = list(c.args)
    while rest:
        take = 2 if len(rest) > 1 and not rest[1].startswith("-") else 1
        lines.append(shlex.join(rest[:take]))
        rest = rest[take:]
    return " \\\n  ".join(lines)


def launch_text(launches: list[Launch]) -> str:
    """Shell text for `plan emit`: a comment naming each deployment, its notes, files and commands."""
    out: list[str] = []
    for la in launches:
        p = la.planned
        where = f"{p.source}:{p.line}" if p.line else p.source
        # Comments hold user text (names, paths) on one line each: a newline in a name must not
        # become a command when the output is run.
        out.append(
            f"# {plain(p.name)} ({plain(where)}): {la.engine}, {plural(p.request.users, 'user')} x "
            f"{p.request.ctx_tokens:,} tokens"
        )
        out += [f"# {plain(n)}" for n in la.notes]
        for name, text in la.files:
            body = text.rstrip("\n")
            end = "EOF"
            while end in body.splitlines():  # a line of the file that would end the here-document
                end += "_"
            out += [f"cat > {shlex.quote(name)} <<'{end}'", body, end]
        if len(la.commands) == 1:
            out.append(_shell_command(la.commands[0]))
        else:
            # Replicas are independent servers, one per GPU: start each in the background, then wait.
            out.append(
                f"# {len(la.commands)} replicas: separate processes, one per GPU on its own port; "
                "these lines start them together (each with &, then wait)"
            )
            out += [_shell_command(c) + " &" for c in la.commands]
            out.append("wait")
        out.append("")
    return "\n".join(out)


def launch_dict(launches: list[Launch]) -> list[dict[str, Any]]:
    """`plan emit --json`: per deployment its engine, notes, files and one entry per process."""
    return [
        {
            "name": la.planned.name,
            "file": la.planned.source,
            "line": la.planned.line,
            "engine": la.engine,
            "notes": list(la.notes),
            "files": [{"name": name, "text": text} for name, text in la.files],
            "commands": [
                {"env": dict(c.env), "program": list(c.program), "args": list(c.args)} for c in la.commands
            ],
        }
        for la in launches
    ]
