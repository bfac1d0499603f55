"""``python -m clickstream.generator``: write a synthetic capture file."""

from __future__ import annotations

import sys

from clickstream.generator.cli import main

if __name__ == "__main__":
    sys.exit(main())
