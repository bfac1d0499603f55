"""Shared pytest configuration: the local stack, the Personalize emulator and the platform databases as
fixtures, and the hypothesis profiles.

Property tests are derandomized by default (profile ``ci``): every run of the suite tries the same
examples, so a test run's verdict depends on the code, not on the draw. ``HYPOTHESIS_PROFILE=explore``
searches with fresh random examples and more of them, to look for new counterexamples while developing.
"""

import os

from hypothesis import settings

settings.register_profile("ci", derandomize=True, print_blob=True)
settings.register_profile("explore", max_examples=500, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

pytest_plugins = ["tests.emulator_fixture", "tests.devstack_fixture", "tests.platform_db_fixture"]
