"""The ``torchscope`` subcommands, one module each.

Every module here has ``add_parser(sub)``, which declares the subcommand and
sets ``func`` to the function that runs it. ``tracer/cli.py`` walks
``COMMANDS`` in order, so a new subcommand is one file and one line below.
"""

COMMANDS = (
    "demo",
    "view",
    "record",
    "imports",
    "check",
    "summary",
    "export",
    "graph",
    "import_chrome",
)
