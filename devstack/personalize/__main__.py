"""``python -m devstack.personalize``: run the emulator (see :mod:`devstack.personalize.server`)."""

import sys

from devstack.personalize.server import main

sys.exit(main())
