"""The ``dv`` command: a Typer app that merges one sub-app per command module.

User mistakes (:class:`~dvcli.errors.UserError`) become one line on stderr and exit status 2;
anything else is a bug and shows its traceback under ``--verbose``.
"""

from __future__ import annotations

import logging
import os
import sys
import traceback
from typing import Annotated, Any, Optional

import typer
from typer.core import TyperGroup

from dvcli import __version__
from dvcli.commands import (
    cluster,
    demo,
    evaluate,
    extract_units,
    prepare,
    pretrain_speaker,
    synthesize,
    train_joint,
    train_t2u,
    transcribe,
)
from dvcli.errors import EXIT_USER_ERROR, UserError, system_error
from dvcli.logs import setup_logging

log = logging.getLogger("dvcli")


class _Group(TyperGroup):
    """Turns exceptions from any command into dv's exit conventions."""

    def list_commands(self, ctx: typer.Context) -> list[str]:
        # Pipeline order reads better in --help than alphabetical order.
        return [c for c in COMMAND_ORDER if c in self.commands] + sorted(
            c for c in self.commands if c not in COMMAND_ORDER
        )

    def main(self, *args: Any, **kwargs: Any) -> Any:
        """Run as a program; a mistake on the command line (unknown option, missing argument, a
        folder where a file goes) is one line ``dv: error: ...`` and exit status 2, like every other
        user error, instead of a framed box that wraps long paths across lines."""
        if kwargs.get("standalone_mode", True) is False:
            return super().main(*args, **kwargs)
        try:
            result = super().main(*args, standalone_mode=False, **kwargs)
        except typer.Abort:
            sys.stderr.write("dv: aborted\n")
            sys.exit(1)
        except typer.TyperException as err:  # Click's usage and parameter errors derive from it
            ctx = getattr(err, "ctx", None)
            if type(err).__name__ == "NoArgsIsHelpError" and ctx is not None:
                typer.echo(ctx.get_help())
            else:
                message = err.format_message() if hasattr(err, "format_message") else str(err)
                hint = f" (see {ctx.command_path} --help)" if ctx is not None else ""
                sys.stderr.write(f"dv: error: {message}{hint}\n")
            sys.exit(int(getattr(err, "exit_code", EXIT_USER_ERROR)))
        sys.exit(result if isinstance(result, int) else 0)

    def invoke(self, ctx: typer.Context) -> Any:
        try:
            return super().invoke(ctx)
        except UserError as err:
            typer.echo(f"dv: error: {err}", err=True)
            raise typer.Exit(EXIT_USER_ERROR) from None
        except BrokenPipeError:
            # `dv ... | head` closed the pipe: not an error worth a message.
            sys.stderr = sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - silence the final flush
            raise typer.Exit(0) from None
        except KeyboardInterrupt:
            typer.echo("dv: interrupted", err=True)
            raise typer.Exit(130) from None
        except Exception as err:
            if type(err).__module__.startswith("typer"):
                raise  # Typer's own exit, abort and usage signals
            # The user's system (full disk, read-only folder, permissions) is the user's error.
            user = system_error(err) if isinstance(err, OSError) else None
            if user is not None:
                typer.echo(f"dv: error: {user}", err=True)
                raise typer.Exit(EXIT_USER_ERROR) from None
            # A bug in dv: say so briefly, or in full under --verbose.
            if _verbosity(ctx) > 0:
                traceback.print_exc()
            else:
                typer.echo(
                    f"dv: internal error: {type(err).__name__}: {err} (run with --verbose for the traceback)",
                    err=True,
                )
            raise typer.Exit(1) from None


COMMAND_ORDER = [
    "prepare",
    "extract-units",
    "cluster",
    "pretrain-speaker",
    "train-joint",
    "train-t2u",
    "synthesize",
    "evaluate",
    "transcribe",
    "demo",
]

app = typer.Typer(
    name="dv",
    cls=_Group,
    help="DINO-VITS: zero-shot voice cloning that stays good with noisy reference clips.\n\n"
    "Example: dv demo -o demo   (the whole pipeline on the bundled toy corpus)",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _verbosity(ctx: typer.Context) -> int:
    root = ctx.find_root()
    return int((root.obj or {}).get("verbosity", 0)) if isinstance(root.obj, dict) else 0


def _version(value: bool) -> None:
    if value:
        typer.echo(f"dv {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    ctx: typer.Context,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Debug logging; tracebacks for internal errors.")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Warnings and errors only; no progress bars.")] = False,
    version: Annotated[
        Optional[bool], typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = None,
) -> None:
    """DINO-VITS: zero-shot voice cloning that stays good with noisy reference clips."""
    verbosity = 1 if verbose else -1 if quiet else 0
    ctx.obj = {"verbosity": verbosity}
    setup_logging(verbosity)


for _module in (
    prepare,
    extract_units,
    cluster,
    pretrain_speaker,
    train_joint,
    train_t2u,
    synthesize,
    evaluate,
    transcribe,
    demo,
):
    app.add_typer(_module.app)


def main() -> None:
    """Console-script entry point."""
    app(prog_name="dv")


if __name__ == "__main__":
    sys.exit(main())
