"""Split learning, SplitFed and split inference: the device runs the layers up to the cut, the cloud the rest.

Activations go up and gradients come down over MQTT (streams ``smashed``, ``cutgrad``, ``splitpred``;
schemas in ``shared/protocol/schemas/``). Modules: :mod:`.wire` (arrays in messages), :mod:`.device`
(NumPy device side, int8 quantization), :mod:`.cloud` (PyTorch cloud side), :mod:`.link` (the MQTT
ends), :mod:`.train` (SL, SplitFed, centralised), :mod:`.inference`, :mod:`.report`, :mod:`.cli`.
docs/integration/split.md describes the protocol and the measured table.
"""
