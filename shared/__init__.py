"""TinyLarge common package: transport, storage, message schemas, TinyML/LargeML helpers, CLI."""

__version__ = "0.1.0"
