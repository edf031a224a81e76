"""Commands whose stage has not landed yet: full help with an example, and exit 2 when run.

Each entry moves out of this table into its own command module when its issue lands.
"""

from __future__ import annotations

import typer

from dvcli.commands.common import PENDING_SETTINGS, not_landed

app = typer.Typer()

#: command -> (issue number, what it does, help text with an example)
PENDING: dict[str, tuple[int, str, str]] = {}


def _register(name: str, issue: int, what: str, help_text: str) -> None:
    def command(ctx: typer.Context) -> None:
        not_landed(name, issue, what)

    command.__doc__ = help_text
    app.command(name, context_settings=PENDING_SETTINGS, add_help_option=True)(command)


for _name, (_issue, _what, _help) in PENDING.items():
    _register(_name, _issue, _what, _help)
