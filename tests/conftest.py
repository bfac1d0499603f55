"""Shared pytest configuration: the local stack, the Personalize emulator and the platform databases as
fixtures."""

pytest_plugins = ["tests.emulator_fixture", "tests.devstack_fixture", "tests.platform_db_fixture"]
