"""``python -m genvault.cli``: the same as the ``genvault`` command."""

from genvault.cli import main

main()
