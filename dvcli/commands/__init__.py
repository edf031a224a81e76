"""The CLI edge: one Typer app per command module, merged into ``dv`` by :mod:`dvcli.cli`.

A command parses options, builds its stage's config with :func:`~dvcli.commands.common.stage_config`,
calls the stage's ``run`` and prints a summary. No pipeline logic lives here.
"""
