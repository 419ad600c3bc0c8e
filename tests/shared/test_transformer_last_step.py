"""The scoring path's last-step encoder equals the whole BERT encoder's last state (eval, no gradients)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from shared.large.transformer import RiskConfig, RiskTransformer, left_pad, predict_histories


def _full(model: RiskTransformer, x: torch.Tensor, mask: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    out = model.encoder(inputs_embeds=model.proj(x), attention_mask=mask, position_ids=pos,
                        token_type_ids=torch.zeros_like(pos))
    return model.head(out.last_hidden_state[:, -1, :])


@pytest.mark.parametrize("cfg", [RiskConfig(), RiskConfig(d_model=32, n_heads=4, d_ff=64, n_layers=3, n_outputs=2),
                                 RiskConfig(d_model=16, n_heads=2, d_ff=32, n_layers=1, seq_len=8)],
                         ids=["default", "three-layers", "one-layer"])
def test_last_step_path_equals_the_whole_encoder(cfg: RiskConfig) -> None:
    torch.manual_seed(1)
    model = RiskTransformer(cfg).eval()
    with torch.no_grad():  # weights away from their init, so LayerNorm and biases matter
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    rng = np.random.default_rng(2)
    hs = [rng.normal(size=(int(n), cfg.n_inputs)).astype(np.float32)
          for n in rng.integers(1, cfg.seq_len + 20, size=40)]
    x, mask, pos = left_pad(hs, cfg.seq_len, cfg.n_inputs)
    assert int(mask.sum(1).min()) < int(mask.sum(1).max())  # padded rows are in the batch
    with torch.no_grad():
        fast = model(x, mask, pos)
        full = _full(model, x, mask, pos)
    assert fast.shape == (len(hs), cfg.n_outputs)
    torch.testing.assert_close(fast, full, rtol=1e-5, atol=1e-5)
    # one history alone scores as it does in the padded batch
    alone = predict_histories(model, hs[:1])
    assert abs(float(alone[0]) - float(torch.sigmoid(full[0, 0]))) < 1e-5


def test_training_keeps_the_whole_encoder_with_gradients() -> None:
    cfg = RiskConfig(d_model=16, n_heads=2, d_ff=32, seq_len=8)
    model = RiskTransformer(cfg).train()
    x, mask, pos = left_pad([np.ones((5, cfg.n_inputs), np.float32)], cfg.seq_len, cfg.n_inputs)
    model(x, mask, pos).sum().backward()
    assert model.encoder.encoder.layer[-1].intermediate.dense.weight.grad is not None
