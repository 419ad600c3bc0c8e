"""TinyLarge shared package: what every domain uses."""
