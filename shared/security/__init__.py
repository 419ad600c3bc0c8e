"""PKI, broker configuration (TLS, passwords, ACLs) and signed model updates."""
