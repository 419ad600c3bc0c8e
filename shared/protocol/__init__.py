"""Envelope, message validation, endpoints (URLs) and topic names."""
