"""LargeML helpers shared by every domain: a per-subject sequence transformer, batching, training, metrics.

* `RiskConfig` / `RiskTransformer`: a Hugging Face model built from a config (nothing downloaded).
  Each step's input vector is projected to `d_model`; a `transformers.BertModel` encoder (fed with
  `inputs_embeds`, its learned position embeddings indexed from the END of the history so that a
  step's position does not depend on padding) encodes the sequence; the last step's state gives one
  logit per output ("event within the next horizon_h hours"). `save_pretrained` / `from_pretrained`
  work on a local folder.
* `left_pad`: a batch of histories of different lengths -> (x, attention_mask, position_ids).
* `fit_binary`: a small training loop over (subject, end step) samples with `pos_weight`.
* `auroc`, `threshold_at_fpr`, `first_alert_lead_s`: evaluation helpers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from transformers import BertConfig, BertModel, PretrainedConfig, PreTrainedModel


class RiskConfig(PretrainedConfig):
    """Sequence risk transformer; every field is a documented hyperparameter."""

    model_type = "tinylarge-risk"

    n_inputs: int = 16  #: length of one step's input vector
    d_model: int = 64  #: width of the encoder
    n_layers: int = 2  #: encoder layers
    n_heads: int = 4  #: attention heads (d_model must be divisible by it)
    d_ff: int = 128  #: feed-forward width inside each encoder layer
    seq_len: int = 72  #: most steps of history seen (72 x 5 min = 6 h)
    dropout: float = 0.1  #: dropout in embeddings, attention and feed-forward
    n_outputs: int = 1  #: logits produced from the last step
    horizon_h: float = 6.0  #: the output predicts an event within this many hours
    step_s: float = 300.0  #: nominal time between steps
    alert_threshold: float = 0.5  #: risk at which an alert is raised (chosen on training data)
    input_names: list[str] | None = None  #: names of the step vector's entries (documentation, checks)

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        checks = {"n_inputs": self.n_inputs >= 1, "d_model": self.d_model >= 1, "n_layers": self.n_layers >= 1,
                  "n_heads": self.n_heads >= 1 and self.d_model % self.n_heads == 0, "d_ff": self.d_ff >= 1,
                  "seq_len": self.seq_len >= 1, "dropout": 0.0 <= self.dropout < 1.0,
                  "n_outputs": self.n_outputs >= 1, "horizon_h": self.horizon_h > 0, "step_s": self.step_s > 0,
                  "input_names": self.input_names is None or len(self.input_names) == self.n_inputs}
        for key, ok in checks.items():
            if not ok:
                raise ValueError(f"RiskConfig.{key}: invalid value {getattr(self, key)!r}")


class RiskTransformer(PreTrainedModel):
    """Input projection -> BERT encoder (from `RiskConfig`, random init) -> last-step head."""

    config_class = RiskConfig
    base_model_prefix = "risk"
    main_input_name = "inputs"

    def __init__(self, config: RiskConfig):
        super().__init__(config)
        self.proj = nn.Linear(config.n_inputs, config.d_model)
        bert = BertConfig(vocab_size=1, hidden_size=config.d_model, num_hidden_layers=config.n_layers,
                          num_attention_heads=config.n_heads, intermediate_size=config.d_ff,
                          hidden_dropout_prob=config.dropout, attention_probs_dropout_prob=config.dropout,
                          max_position_embeddings=config.seq_len, type_vocab_size=1, pad_token_id=0,
                          tie_word_embeddings=False)
        bert._attn_implementation = "sdpa"  # fully masked (padding) rows stay finite: tested
        self.encoder = BertModel(bert, add_pooling_layer=False)
        self.head = nn.Linear(config.d_model, config.n_outputs)
        self.post_init()

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        std = 0.02
        if isinstance(module, nn.Linear):
            module.weight.normal_(0.0, std)
            if module.bias is not None:
                module.bias.zero_()
        elif isinstance(module, nn.Embedding):
            module.weight.normal_(0.0, std)
        elif isinstance(module, nn.LayerNorm):
            module.weight.fill_(1.0)
            module.bias.zero_()
        if hasattr(module, "position_ids"):
            module.position_ids.copy_(torch.arange(module.position_ids.shape[-1]).expand((1, -1)))
        if hasattr(module, "token_type_ids"):
            module.token_type_ids.zero_()

    def forward(self, inputs: torch.Tensor, attention_mask: torch.Tensor | None = None,
                position_ids: torch.Tensor | None = None) -> torch.Tensor:
        """inputs (B, T, n_inputs) float, left-padded; attention_mask (B, T) 1 for real steps;
        position_ids (B, T) (default: counted from the end). Returns logits (B, n_outputs)."""
        b, t, n = inputs.shape
        if n != self.config.n_inputs:
            raise ValueError(f"inputs: last dimension must be n_inputs={self.config.n_inputs}, got {n}")
        if t > self.config.seq_len:
            raise ValueError(f"inputs: at most seq_len={self.config.seq_len} steps, got {t}")
        if attention_mask is None:
            attention_mask = torch.ones(b, t, dtype=torch.long, device=inputs.device)
        if position_ids is None:
            position_ids = (torch.arange(t, device=inputs.device) + self.config.seq_len - t).expand(b, -1)
        emb = self.proj(inputs)
        if not self.training and not torch.is_grad_enabled():
            return self.head(self._last_step_state(emb, attention_mask, position_ids))
        out = self.encoder(inputs_embeds=emb, attention_mask=attention_mask, position_ids=position_ids,
                           token_type_ids=torch.zeros_like(position_ids))
        return self.head(out.last_hidden_state[:, -1, :])

    def _last_step_state(self, emb: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor
                         ) -> torch.Tensor:
        """The encoder's last-step state, computed with the encoder's own weights, for inference only.

        Equal to ``encoder(...).last_hidden_state[:, -1]`` (tested), at less cost: only the last step's
        state is read, so the top layer attends from that one step (its query, attention output and
        feed-forward run on 1 of T rows) while its keys and values, and every lower layer, stay whole.
        Padded steps are masked as keys; as queries (lower layers) they attend to the real steps, whose
        results they cannot change. Used in eval mode without gradients (the service's scoring path).
        """
        enc = self.encoder
        e = enc.embeddings
        h = emb + e.position_embeddings(position_ids) + e.token_type_embeddings(torch.zeros_like(position_ids))
        h = e.LayerNorm(h)
        keep = attention_mask.to(torch.bool)[:, None, None, :]  # (B, 1, 1, T): keys that are real steps
        layers = enc.encoder.layer
        n_heads = self.config.n_heads
        b, t, d = h.shape
        for i, layer in enumerate(layers):
            att = layer.attention.self
            src = h if i < len(layers) - 1 else h[:, -1:, :]
            q = att.query(src).view(b, src.shape[1], n_heads, d // n_heads).transpose(1, 2)
            k = att.key(h).view(b, t, n_heads, d // n_heads).transpose(1, 2)
            v = att.value(h).view(b, t, n_heads, d // n_heads).transpose(1, 2)
            ctx = nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=keep)
            ctx = ctx.transpose(1, 2).reshape(b, src.shape[1], d)
            a = layer.attention.output.LayerNorm(layer.attention.output.dense(ctx) + src)
            f = layer.output.dense(layer.intermediate.intermediate_act_fn(layer.intermediate.dense(a)))
            h = layer.output.LayerNorm(f + a)
        return h[:, -1, :]


def left_pad(histories: Sequence[np.ndarray], seq_len: int, n_inputs: int
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Keep the last `seq_len` steps of each history and left-pad to the longest.

    Returns (inputs (B, L, n_inputs) float32, attention_mask (B, L) long, position_ids (B, L) long),
    with the real steps of every history at positions seq_len - T_i .. seq_len - 1.
    """
    if len(histories) == 0:
        raise ValueError("histories: empty batch")
    hs = []
    for i, h in enumerate(histories):
        h = np.asarray(h, dtype=np.float32)
        if h.ndim != 2 or h.shape[1] != n_inputs or len(h) == 0:
            raise ValueError(f"histories[{i}]: expected shape (T>=1, {n_inputs}), got {h.shape}")
        hs.append(h[-seq_len:])
    length = max(len(h) for h in hs)
    x = np.zeros((len(hs), length, n_inputs), dtype=np.float32)
    mask = np.zeros((len(hs), length), dtype=np.int64)
    for i, h in enumerate(hs):
        x[i, length - len(h):] = h
        mask[i, length - len(h):] = 1
    pos = np.clip(np.arange(length) + seq_len - length, 0, None)
    return (torch.from_numpy(x), torch.from_numpy(mask),
            torch.from_numpy(np.broadcast_to(pos, (len(hs), length)).copy()))


@dataclass
class FitConfig:
    """Training loop settings for `fit_binary`."""

    epochs: int = 4  #: passes over the (subsampled) samples
    batch_size: int = 128  #: samples per optimizer step
    lr: float = 2e-3  #: AdamW learning rate (linear warm-up over 5 % of steps, then cosine decay)
    weight_decay: float = 0.01  #: AdamW weight decay
    pos_weight: float | None = None  #: BCE positive weight; None -> n_negative / n_positive
    threads: int = 2  #: torch CPU threads
    seed: int = 0  #: sample order and initialisation
    samples_per_epoch: int | None = None  #: random subset drawn afresh each epoch; None -> all samples


def fit_binary(model: RiskTransformer, sequences: Sequence[np.ndarray], samples: np.ndarray, labels: np.ndarray,
               cfg: FitConfig, progress: Callable[[int], None] | None = None) -> list[float]:
    """Train `model` on samples (N, 2) = (sequence index, end step) with binary `labels` (N,).

    The input of sample (i, t) is sequences[i][t - seq_len + 1 : t + 1]. Returns the mean loss per
    epoch. `progress(n)` is called after each batch with the number of samples processed.
    """
    samples, labels = np.asarray(samples, dtype=np.int64), np.asarray(labels, dtype=np.float32)
    if samples.ndim != 2 or samples.shape[1] != 2 or len(samples) != len(labels) or len(samples) == 0:
        raise ValueError(f"samples (N, 2) and labels (N,) must match, got {samples.shape} and {labels.shape}")
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    n_pos = float(labels.sum())
    pw = cfg.pos_weight if cfg.pos_weight is not None else max(1.0, (len(labels) - n_pos) / max(n_pos, 1.0))
    loss_fn = nn.BCEWithLogitsLoss(pos_weight=torch.tensor([pw]))
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    per_epoch = len(samples) if cfg.samples_per_epoch is None else min(len(samples), cfg.samples_per_epoch)
    steps = cfg.epochs * int(np.ceil(per_epoch / cfg.batch_size))
    warm = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min((s + 1) / warm, 0.5 * (
        1 + np.cos(np.pi * min(1.0, s / steps)))))
    seq_len, n_in = model.config.seq_len, model.config.n_inputs
    losses = []
    model.train()
    for _ in range(cfg.epochs):
        order = rng.permutation(len(samples))[:per_epoch]
        total = 0.0
        for a in range(0, len(order), cfg.batch_size):
            idx = order[a : a + cfg.batch_size]
            hist = [sequences[i][max(0, t - seq_len + 1) : t + 1] for i, t in samples[idx]]
            x, mask, pos = left_pad(hist, seq_len, n_in)
            logits = model(x, mask, pos)[:, 0]
            loss = loss_fn(logits, torch.from_numpy(labels[idx]))
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
            if progress is not None:
                progress(len(idx))
        losses.append(total / per_epoch)
    model.eval()
    return losses


@torch.no_grad()
def predict_histories(model: RiskTransformer, histories: Sequence[np.ndarray], batch_size: int = 256
                      ) -> np.ndarray:
    """Sigmoid of the first output for each history (batched, left-padded, eval mode)."""
    model.eval()
    out = []
    for a in range(0, len(histories), batch_size):
        x, mask, pos = left_pad(histories[a : a + batch_size], model.config.seq_len, model.config.n_inputs)
        out.append(torch.sigmoid(model(x, mask, pos)[:, 0]).numpy())
    return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)
