"""``python -m genesis_platform.cli``: the ``genesis`` command."""

from genesis_platform.cli import main

main()
