"""``python -m miaudit``: the same command line as the ``miaudit`` script."""

from __future__ import annotations

from miaudit.cli import main

if __name__ == "__main__":
    main()
