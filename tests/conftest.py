"""Top-level pytest configuration: real-server fixtures live in tests/fixtures/ as plugins."""

pytest_plugins = ["tests.fixtures.mqtt", "tests.fixtures.influx"]
