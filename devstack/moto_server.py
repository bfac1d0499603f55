"""moto server (``python -m devstack.moto_server -H HOST -p PORT``), without a log line per request.

The KCL daemon renews its leases through moto every second or so and tests send thousands of requests:
werkzeug's access log would grow without bound. ``DEVSTACK_MOTO_ACCESS_LOG=1`` keeps it.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    if os.environ.get("DEVSTACK_MOTO_ACCESS_LOG", "").lower() not in ("1", "true", "yes"):
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
    from moto.server import main as moto_main

    moto_main(list(sys.argv[1:] if argv is None else argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
