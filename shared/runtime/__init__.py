"""What every domain's service, fleets, demo, training run and report do alike."""
