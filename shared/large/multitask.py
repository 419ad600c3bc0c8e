"""Event-and-time training for `RiskTransformer`: one binary output and one regressed output.

Many domains ask two questions of a subject's history: "will the event happen within the horizon?"
(a logit, output 0) and "how long until it does?" (a regression, output 1, e.g. a normalised
log remaining useful life). `fit_event_time` trains both at once:

    loss = BCEWithLogits(out0, label; pos_weight) + time_weight * mean over valid targets of (out1 - target)^2

Targets that are NaN (unknown: censored, or not defined for that sample) are left out of the
regression term. `predict_outputs` returns (sigmoid(out0), out1) for a batch of histories. The
sampling, schedule and batching are those of `shared.large.transformer.fit_binary`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

from shared.large.transformer import FitConfig, RiskTransformer, left_pad


def fit_event_time(model: RiskTransformer, sequences: Sequence[np.ndarray], samples: np.ndarray, labels: np.ndarray,
                   targets: np.ndarray, cfg: FitConfig, time_weight: float = 1.0,
                   progress: Callable[[int], None] | None = None) -> list[float]:
    """Train `model` (n_outputs >= 2) on samples (N, 2) = (sequence index, end step), binary
    `labels` (N,) for output 0 and float `targets` (N,) (NaN: no target) for output 1.

    The input of sample (i, t) is sequences[i][t - seq_len + 1 : t + 1]. Returns the mean loss per epoch.
    """
    samples = np.asarray(samples, dtype=np.int64)
    labels, targets = np.asarray(labels, dtype=np.float32), np.asarray(targets, dtype=np.float32)
    if (samples.ndim != 2 or samples.shape[1] != 2 or not len(samples) == len(labels) == len(targets)
            or not len(samples)):
        raise ValueError(f"samples (N, 2), labels (N,) and targets (N,) must match, got {samples.shape}, "
                         f"{labels.shape}, {targets.shape}")
    if model.config.n_outputs < 2:
        raise ValueError(f"fit_event_time needs n_outputs >= 2, got {model.config.n_outputs}")
    if time_weight < 0:
        raise ValueError(f"time_weight: must be >= 0, got {time_weight!r}")
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    n_pos = float(labels.sum())
    pw = cfg.pos_weight if cfg.pos_weight is not None else max(1.0, (len(labels) - n_pos) / max(n_pos, 1.0))
    bce = nn.BCEWithLogitsLoss(pos_weight=torch.tensor([pw]))
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
            idx = order[a: a + cfg.batch_size]
            hist = [sequences[i][max(0, t - seq_len + 1): t + 1] for i, t in samples[idx]]
            x, mask, pos = left_pad(hist, seq_len, n_in)
            out = model(x, mask, pos)
            loss = bce(out[:, 0], torch.from_numpy(labels[idx]))
            tgt = torch.from_numpy(targets[idx])
            valid = ~torch.isnan(tgt)
            if time_weight > 0 and bool(valid.any()):
                loss = loss + time_weight * torch.mean((out[valid, 1] - tgt[valid]) ** 2)
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
def predict_outputs(model: RiskTransformer, histories: Sequence[np.ndarray], batch_size: int = 256
                    ) -> tuple[np.ndarray, np.ndarray]:
    """(sigmoid(output 0), output 1) for each history (batched, left-padded, eval mode)."""
    model.eval()
    probs, times = [], []
    for a in range(0, len(histories), batch_size):
        x, mask, pos = left_pad(histories[a: a + batch_size], model.config.seq_len, model.config.n_inputs)
        out = model(x, mask, pos)
        probs.append(torch.sigmoid(out[:, 0]).numpy())
        times.append(out[:, 1].numpy())
    if not probs:
        return np.zeros(0, dtype=np.float32), np.zeros(0, dtype=np.float32)
    return np.concatenate(probs), np.concatenate(times)
