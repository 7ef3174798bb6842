"""The ``mmembed`` command line: index, search, serve, delete, info, eval, migrate, models.

``--index`` takes a folder (the embedded index) or a backend URI such as
``qdrant://host:6333/collection`` (``--backend qdrant --url URL --index COLLECTION`` says the same).

Exit codes: 0 on success, 2 on usage errors (argparse), 1 on any other error, with a
one-line message that names the file or page and says what to do.

Layout: one module per command (``index``, ``search``, ``serve``, ``delete``, ``info``,
``eval``, ``migrate``, ``models``), each with ``add_parser(subparsers)`` and ``run(args)``,
registered in :data:`mmembed.cli.main.COMMANDS`; shared pieces in ``arguments`` (arguments
several commands take), ``options`` (arguments → library options), ``output`` (terminal-safe
printing) and ``errors`` (exit codes, :class:`CLIError`). Nothing here imports torch until a
command runs, so ``mmembed --help`` answers at once.
"""

from __future__ import annotations

from .arguments import DEFAULT_MODEL, MODEL_ENV

# The command functions also under their former names (``mmembed.cli.cmd_index`` ...).
from .delete import run as cmd_delete
from .errors import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, CLIError
from .eval import run as cmd_eval
from .index import run as cmd_index
from .info import run as cmd_info
from .main import COMMANDS, build_parser, main
from .migrate import run as cmd_migrate
from .models import run as cmd_models
from .output import safe, safe_lines
from .search import run as cmd_search
from .serve import run as cmd_serve

__all__ = [
    "COMMANDS",
    "DEFAULT_MODEL",
    "EXIT_ERROR",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "MODEL_ENV",
    "CLIError",
    "build_parser",
    "cmd_delete",
    "cmd_eval",
    "cmd_index",
    "cmd_info",
    "cmd_migrate",
    "cmd_models",
    "cmd_search",
    "cmd_serve",
    "main",
    "safe",
    "safe_lines",
]
