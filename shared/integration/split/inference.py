"""Split inference: the device's int8 layers up to the cut, the cloud's float model after it, over MQTT.

The trained device part is quantized (:func:`shared.integration.split.device.quantize`, calibrated on
training windows); each inference device sends its int8 activations with their scale and zero point on
``smashed`` (phase ``infer``) and receives the classes on ``splitpred``. Reported beside the float
split model's accuracy on the same held-out windows, with the payload bytes per window measured both
batched and one window per message (what a device sending each window as it closes pays).
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import numpy as np

from shared.integration.split.device import quantize
from shared.integration.split.link import CloudService, DeviceLink
from shared.integration.split.train import SplitData, SplitResult, accuracy

CALIBRATION_MAX = 2000
SINGLE_WINDOWS = 20  #: windows sent one per message to measure the unbatched cost


def split_inference(result: SplitResult, data: SplitData, url: str, n_devices: int = 2, batch: int = 64,
                    timeout_s: float = 10.0, tls: dict[str, str] | None = None) -> dict[str, Any]:
    """Run the held-out windows through int8 device part -> MQTT -> cloud; accuracy and bytes. ``tls``:
    ``ca``/``cert``/``key`` paths for mqtts://."""
    tls = dict(tls or {})
    if result.device is None or result.server is None:
        raise ValueError("split_inference needs a trained SplitResult (device and server)")
    if n_devices < 1 or batch < 1:
        raise ValueError(f"split_inference: n_devices and batch must be >= 1, got {n_devices}, {batch}")
    t0 = time.monotonic()
    x_train = data.x_train
    pick = np.linspace(0, len(x_train) - 1, min(len(x_train), CALIBRATION_MAX)).round().astype(int)
    q8 = quantize(result.device, x_train[pick])
    domain = data.task.domain
    run_id = uuid.uuid4().hex[:8]
    model = f"{data.task.model_id}-split-int8@cut{len(result.device.sizes) - 1}"
    cloud = CloudService(url, domain, result.server, model, f"cloud-inf-{run_id}", lambda d: "unused",
                         infer_key=result.server_key, **tls).start()
    devices = [f"inf-{run_id}-d{i:02d}" for i in range(n_devices)]
    shards = np.array_split(np.arange(len(data.x_test)), n_devices)
    pred = np.full(len(data.x_test), -1, np.int64)
    links: list[DeviceLink] = []
    errors: list[str] = []
    try:
        for d in devices:
            cloud.admit(d)
            links.append(DeviceLink(url, domain, d, model, "int8", timeout_s, **tls).start())

        def work(k: int) -> None:
            try:
                idx = shards[k]
                for b, start in enumerate(range(0, len(idx), batch)):
                    sel = idx[start:start + batch]
                    q, scale, zp = q8.forward(data.x_test[sel])
                    pred[sel] = links[k].infer(0, b, q, scale, zp)
            except Exception as exc:  # reported below, never swallowed
                errors.append(f"{devices[k]}: {exc}")

        threads = [threading.Thread(target=work, args=(k,), daemon=True) for k in range(n_devices)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise RuntimeError(f"split inference failed: {errors[0]}")
        batched = sum(lk.bytes_up + lk.bytes_down for lk in links) / len(data.x_test)
        single = links[0]
        before = single.bytes_up + single.bytes_down
        n_single = min(SINGLE_WINDOWS, len(data.x_test))
        for j in range(n_single):
            q, scale, zp = q8.forward(data.x_test[j:j + 1])
            single.infer(1, j, q, scale, zp)
        per_window = (single.bytes_up + single.bytes_down - before) / n_single
    finally:
        for lk in links:
            lk.stop()
        cloud.stop()
    acc_int8 = float(np.mean(pred == data.y_test))
    local = result.server.predict(q8.dequantized(data.x_test), key=result.server_key)
    return {
        "acc_int8": acc_int8,
        "acc_float": accuracy(result.device, result.server, result.server_key, data.x_test, data.y_test),
        "acc_int8_in_process": float(np.mean(local == data.y_test)),
        "bytes_per_window_batched": round(batched, 1),
        "bytes_per_window_single": round(per_window, 1),
        "batch": batch,
        "device_macs": q8.macs(),
        "device_weight_bytes_int8": q8.weight_bytes(),
        "windows": len(data.x_test),
        "seconds": round(time.monotonic() - t0, 1),
    }
