"""Federated learning of the domains' tiny models on Flower's deployment engine (SuperLink + SuperNodes).

Flower-example shape: :mod:`.task` (model, partitions, train/evaluate, weights <-> arrays),
:mod:`.client_app`, :mod:`.server_app`; around them :mod:`.processes` (the OS processes of a run),
:mod:`.runner` (one run end to end), :mod:`.compare` (baselines, traffic, int8, rollout),
:mod:`.cli` (``tinylarge fl``) and :mod:`.report` (rows for ``make integration-report``).
See docs/integration/federated.md.
"""
