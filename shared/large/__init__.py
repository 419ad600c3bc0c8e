"""The cloud model: transformer configuration, modelling, training loop and metrics."""
