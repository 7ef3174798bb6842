"""``python -m mmembed.cli ...`` runs the ``mmembed`` command."""

from .main import main

raise SystemExit(main())
