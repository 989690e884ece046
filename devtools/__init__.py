"""Local tooling: the Redis server and process supervisor behind ``make run`` and the test fixtures."""
