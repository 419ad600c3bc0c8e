"""The loop in which the cloud teaches the fleet, closed once, live, halfway through ``tinylarge demo DOMAIN``.

During the first half every simulated device runs its factory model (the domain's int8 classifier, whose
class scores the cloud's large model reads) and the fleet notes the input vector each window gave it.
Halfway through, the cloud takes what the fleet sent so far (those windows) and labels each with what
its large model answered for it (the result message's event probability: the teacher's soft output; the
cloud never sees the simulator's truth), and distils a student: an MLP with the deployed model's kind of
widths, two classes (no event, event), trained on the soft labels only (cross-entropy against the
teacher's distribution), features standardised inside its first layer. The student is converted to full
int8, held to the device budget, compiled to C (:func:`shared.integration.rollout.roll_out`), signed and
published retained on each device's ``model`` topic, after one forged copy the first device must refuse.
Each device installs it in a SECOND slot (:class:`shared.runtime.fleet.SecondSlot`): the factory
classifier stays in the first one, since the cloud's large model reads its outputs (healthcare: the
class scores are inputs of the risk transformer), and from then on the device also runs the student on
every window: its own event estimate, which it keeps when the cloud is out of reach.

The fleet metric is measured on the windows after the swap (none of them was in the training set: they
did not exist yet), from what the devices computed live: the event estimate the device had before (the
factory classifier's 1 - p(first class), "normal") against the student's p(event), both scored against the
simulator's truth (the scenario's :meth:`~shared.runtime.scenario.Scenario.window_truth`) as AUROC when
both classes occur there, else as Spearman's rank correlation with the teacher on the same windows. The
teacher's own figure on those windows stands beside them.

A domain joins when its hooks offer a ``distill_task`` (the pairing of its large model as teacher and a
tiny student); until then the demo's summary says ``live_loop: skipped (no distill_task)`` and the demo
rolls out its factory model under a new version, as before, so that the signed-update checks still run.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

#: the student's hidden widths (a few KB of int8 weights: far inside every domain's device budget)
HIDDEN = (32, 16)
SKIPPED_NO_TASK = "skipped (no distill_task)"


def student_name(d: Any) -> str:
    """The student's model name: ``<domain prefix>-risk-tiny`` (healthcare-risk-tiny, iot-risk-tiny)."""
    return f"{d.tiny_model.removesuffix('-tiny')}-risk-tiny"


def skip_reason(d: Any) -> str | None:
    """Why the domain's demo cannot close the loop (None: it can)."""
    return SKIPPED_NO_TASK if getattr(d.hooks, "distill_task", None) is None else None


def short_hash(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()[:12]


class LiveLoop:
    """One live loop of one demo run: :meth:`close` at mid-run, :meth:`summary` at the end."""

    def __init__(self, run: Any, scen: Any):
        self.run, self.scen, self.d = run, scen, run.domain
        self.name = student_name(self.d)
        self.quick = bool(getattr(run.args, "quick", False))
        self.rows: dict[str, Any] = {"live_loop": "not reached"}
        self.factory: str | None = None
        self.closed = False

    # -- mid-run --------------------------------------------------------------------------------------
    def close(self, publish: Callable[[str, str, dict], None], private_key: Path) -> None:
        """Distil from what the fleet sent so far, roll the student out signed, wait for the devices."""
        from shared.integration.rollout import roll_out
        from shared.security.model_update import sign_update

        devices = list(self.run.fleet.devices)
        factory = Path(self.run.args.models) / "tiny.tflite"
        self.factory = f"{devices[0].model.model_id} {short_hash(factory.read_bytes())}" if devices else None
        x, p = self._training_set(devices)
        if len(x) < 8 or float(np.ptp(p)) <= 0.0:
            self.rows["live_loop"] = f"skipped ({len(x)} windows with a teacher answer, too few to distil from)"
            return
        print(f"{self.d.name}: live loop: the cloud distils its large model into {self.name} from the {len(x)} "
              f"windows the fleet sent so far ...", flush=True)
        t0 = time.monotonic()
        blob = distil_apart(x, p, quick=self.quick)
        train_s = time.monotonic() - t0
        forged = sign_update(self.d.name, devices[0].id, self.name, 1, blob, private_key, 0, int(time.time() * 1000))
        b64 = forged["tflite_b64"]
        forged["tflite_b64"] = b64[:40] + ("A" if b64[40] != "A" else "B") + b64[41:]
        publish(devices[0].id, "model", forged)
        done = roll_out(blob, domain=self.d.name, devices=[dev.id for dev in devices], model_id=f"{self.name}@1",
                        private_key=private_key, out_dir=self.run.out / "live-loop", labels=["no_event", "event"],
                        publish=publish)
        deadline = time.monotonic() + 30.0
        while time.monotonic() < deadline and not all(dev.second.runner is not None for dev in devices):
            time.sleep(0.05)
        installed = sum(dev.second.runner is not None for dev in devices)
        self.closed = True
        self.rows.update({
            "live_loop": "closed" if installed == len(devices) else f"closed on {installed} of {len(devices)} devices",
            "model_before": self.factory, "model_after": f"{done.model_name}@{done.version} {short_hash(blob)}",
            "live_loop_train_windows": len(x), "live_loop_distil_s": round(train_s, 1),
            "live_loop_student_bytes": len(blob), "live_loop_student_macs": done.compiled.macs,
            "live_loop_c_compiled_with": done.c_compiler, "live_loop_devices_installed": installed,
        })
        print(f"{self.d.name}: live loop: {self.rows['model_before']} -> {self.rows['model_after']} on {installed} "
              f"of {len(devices)} devices (second slot; the factory model keeps the first)", flush=True)

    def _teacher(self) -> dict[tuple[str, int], float]:
        out = {}
        for msg in list(self.run.results):
            p = self.scen.teacher_score(msg)
            if p is not None and "source_seq" in msg:
                out[(str(msg["device"]), int(msg["source_seq"]))] = p
        return out

    def _training_set(self, devices: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
        """The windows sent so far that the cloud answered, with the answer (waits a little for the service)."""
        want = {(dev.id, w[0]) for dev in devices for w in dev.windows}
        deadline = time.monotonic() + 15.0
        teacher = self._teacher()
        while time.monotonic() < deadline and not want <= teacher.keys():
            time.sleep(0.1)
            teacher = self._teacher()
        xs, ps = [], []
        for dev in devices:
            for seq, _t, rows, _p0, _p in list(dev.windows):
                if (dev.id, seq) in teacher:  # every input row of the message gets the cloud's answer to it
                    xs.append(rows)
                    ps.append(np.full(len(rows), teacher[(dev.id, seq)]))
        if not xs:
            return np.zeros((0, 1), np.float32), np.zeros(0)
        return np.concatenate(xs).astype(np.float32), np.concatenate(ps).astype(np.float64)

    # -- at the end -----------------------------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        """The summary's rows: model and fleet metric before and after, on the windows after the swap."""
        if not self.closed:
            return dict(self.rows)
        from scipy.stats import spearmanr

        from shared.runtime.metrics import auroc_or_none

        teacher = self._teacher()
        rows = []
        for dev in self.run.fleet.devices:
            for seq, t_s, _x, p_first, p_after in list(dev.windows):
                if p_after is None:
                    continue
                truth, ans = self.scen.window_truth(dev.id, t_s), teacher.get((dev.id, seq))
                rows += [(truth, 1.0 - float(b), float(a), ans) for b, a in zip(p_first, p_after, strict=True)]
        truth = [r for r in rows if r[0] is not None]
        y = np.array([r[0] for r in truth], dtype=int)
        out = dict(self.rows)
        if len(y) and 0 < y.sum() < len(y):
            out["fleet_metric"] = "event AUROC vs the simulator's truth (windows after the swap)"
            t = [r for r in truth if r[3] is not None]
            before = auroc_or_none(y, np.array([r[1] for r in truth]))
            after = auroc_or_none(y, np.array([r[2] for r in truth]))
            ref = auroc_or_none(np.array([r[0] for r in t]), np.array([r[3] for r in t])) if t else None
            n = len(truth)
        else:
            out["fleet_metric"] = "Spearman rank correlation with the teacher (windows after the swap)"
            t = [r for r in rows if r[3] is not None]
            tp = np.array([r[3] for r in t])

            def rho(col: int) -> float | None:
                if len(t) < 3 or np.ptp(tp) == 0:
                    return None
                v = float(spearmanr([r[col] for r in t], tp).statistic)
                return None if np.isnan(v) else round(v, 4)

            before, after, ref, n = rho(1), rho(2), (1.0 if len(t) >= 3 else None), len(t)
        out.update({"fleet_metric_before": before, "fleet_metric_after": after, "fleet_metric_teacher": ref,
                    "fleet_metric_windows": n})
        if out["fleet_metric"].startswith("event AUROC"):
            out["fleet_metric_positive"] = int(y.sum())
        return out


# -- the student ----------------------------------------------------------------------------------------
def distil_apart(x: np.ndarray, p: np.ndarray, quick: bool) -> bytes:
    """:func:`distil` in a process of its own (spawned, at a lower CPU priority): the training and the TensorFlow
    conversion neither hold the demo process's interpreter lock nor crowd out the cloud service and the
    firmware devices, which keep their pace (and their latencies) while the cloud distils."""
    import multiprocessing
    import os
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                             initializer=os.nice, initargs=(10,)) as pool:
        return pool.submit(distil, x, p, quick).result(timeout=600)


def distil(x: np.ndarray, p: np.ndarray, quick: bool) -> bytes:
    """The student's full-int8 TFLite bytes, fitted to the teacher's event probabilities ``p`` on inputs ``x``."""
    return _int8(_fit(x, p, quick=quick), x)


def _fit(x: np.ndarray, p: np.ndarray, quick: bool) -> Any:
    """An MLP fitted to the teacher's distribution (soft cross-entropy: each window twice, weighted 1 - p and
    p), on standardised inputs; the standardisation is folded into the first layer, so it takes raw vectors."""
    from shared.integration import _mlp

    mean, std = x.mean(0), x.std(0)
    std = np.where(std > 1e-6, std, 1.0).astype(np.float32)
    z = (x - mean) / std
    n = len(x)
    zz = np.concatenate([z, z])
    yy = np.concatenate([np.zeros(n, np.int64), np.ones(n, np.int64)])
    ww = np.concatenate([1.0 - p, p]).astype(np.float32)
    epochs = 60 if quick else 40
    model = _mlp.fit(_mlp.init_mlp(x.shape[1], HIDDEN, 2, seed=0), zz, yy, epochs=epochs, lr=3e-3,
                     batch_size=32 if n < 2000 else 128, seed=0, sample_weight=ww)
    w0, b0 = model.weights[0], model.biases[0]
    model.weights[0] = (w0 / std[:, None]).astype(np.float32)
    model.biases[0] = (b0 - (mean / std) @ w0).astype(np.float32)
    return model


def _int8(model: Any, x: np.ndarray) -> bytes:
    from shared.integration import _mlp

    rep = x[np.random.default_rng(0).permutation(len(x))[:500]]
    return _mlp.to_int8(model, rep)
