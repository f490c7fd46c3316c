"""End-to-end fixtures: the integration harness (real Redis, databases, System) reused."""

from tests.integration.conftest import *  # noqa: F403 - pytest fixtures are picked up by name
