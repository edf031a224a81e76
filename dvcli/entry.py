"""The ``dv`` console script: checks that dv's compiled dependencies load before anything runs.

A binary wheel that does not match its neighbours (torchaudio 2.11.1 beside torch 2.11.0 fails with
``OSError: Could not load this library: .../libtorchaudio.so``) would otherwise print a long
traceback from deep inside an import. This module imports nothing heavy itself, so it can report
that as one line with the fix.
"""

from __future__ import annotations

import sys

from dvcli.errors import EXIT_USER_ERROR

#: How to get back to the tested versions (the lock is constraints.txt in the repository).
REINSTALL = "reinstall the locked versions: rm -rf .venv && make install (or pip install -c constraints.txt -e .)"


def import_failure() -> str | None:
    """Import the CLI (and with it every stage and compiled dependency).

    Returns:
        ``None`` when it imports, else one line naming what failed to load and the fix.
    """
    try:
        import dvcli.cli  # noqa: F401
    except (ImportError, OSError) as err:
        text = " ".join(str(err).split()) or type(err).__name__
        return f"broken install: {text} ({REINSTALL})"
    return None


def main() -> None:
    """Console-script entry point: :func:`dvcli.cli.main` once the install is known to load."""
    failure = import_failure()
    if failure is not None:
        sys.stderr.write(f"dv: {failure}\n")
        sys.exit(EXIT_USER_ERROR)
    from dvcli.cli import main as cli_main

    cli_main()
