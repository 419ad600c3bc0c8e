"""How the large model and the tiny one teach each other (distillation, transfer, federated, split)."""
