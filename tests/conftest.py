"""Shared pytest configuration: the local stack and the Personalize emulator as fixtures."""

pytest_plugins = ["tests.emulator_fixture", "tests.devstack_fixture"]
