"""Split learning without a broker: arrays on the wire, the NumPy device side, int8, data split, CLI errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from shared.integration.split import wire
from shared.integration.split.device import DeviceNet, average, quantize
from shared.integration.split.train import device_sizes, fl_bytes_per_client_round, prepare, tiny_model_params
from shared.integration.task import TinyTask
from shared.protocol import messages

RNG = np.random.default_rng(7)


def _msg(fields: dict, **extra) -> dict:
    env = wire.Envelope("dev-1", "iot-tiny-split@cut1")
    return {**env.next(), "round": 0, "batch": 3, "phase": "train", **fields, "labels": [0, 1, 2], **extra}


def test_float32_crosses_the_wire_exactly_and_float16_within_its_precision():
    a = RNG.standard_normal((3, 5)).astype(np.float32) * 1e-4  # gradient-sized values
    for dtype, tol in (("float32", 0.0), ("float16", 1e-3)):
        data = messages.encode("industrial_iot", wire.SMASHED, _msg(wire.pack(a, dtype)))
        back = wire.unpack(messages.decode("industrial_iot", wire.SMASHED, data))
        assert back.shape == a.shape
        assert np.max(np.abs(back - a)) <= tol * np.max(np.abs(a))


def test_int8_carries_its_scale_and_zero_point():
    q = np.array([[-128, 0, 127]], dtype=np.int8)
    fields = wire.pack(q, "int8", scale=0.5, zero_point=-128)
    assert np.array_equal(wire.unpack({**fields}), np.array([[0.0, 64.0, 127.5]], np.float32))
    with pytest.raises(ValueError, match="scale"):
        wire.pack(q, "int8")


def test_bad_arrays_and_messages_are_refused_with_the_reason():
    with pytest.raises(ValueError, match="2-D"):
        wire.pack(np.zeros((2, 2, 2)), "float32")
    with pytest.raises(ValueError, match="NaN"):
        wire.pack(np.array([[np.nan]]), "float16")
    with pytest.raises(ValueError, match="wire dtype"):
        wire.pack(np.zeros((1, 1)), "float64")
    fields = wire.pack(np.ones((2, 2), np.float32), "float32")
    with pytest.raises(messages.MessageError, match="dtype"):
        messages.encode("industrial_iot", wire.SMASHED, _msg({**fields, "dtype": "float64"}))
    short = {**fields, "shape": [3, 2]}  # claims more elements than data holds
    with pytest.raises(messages.MessageError, match="needs"):
        wire.unpack(messages.decode("industrial_iot", wire.SMASHED,
                                    messages.encode("industrial_iot", wire.SMASHED, _msg(short))))


def test_device_backward_matches_torch_autograd():
    net = DeviceNet([6, 5, 4], seed=1)
    x = RNG.standard_normal((8, 6)).astype(np.float32)
    head = RNG.standard_normal((4, 3)).astype(np.float32)
    y = RNG.integers(0, 3, 8)
    # torch reference: same weights, loss on top of the cut
    ws = [torch.tensor(p, requires_grad=True) for p in net.params()]
    a = torch.tensor(x)
    for i in range(0, len(ws), 2):
        a = torch.relu(a @ ws[i] + ws[i + 1])
    a.retain_grad()
    loss = torch.nn.functional.cross_entropy(a @ torch.tensor(head), torch.tensor(y))
    loss.backward()
    acts = net.forward(x, train=True)
    assert np.allclose(acts, a.detach().numpy(), atol=1e-5)
    grads = net.gradients(a.grad.numpy())
    for mine, ref in zip(grads, ws, strict=True):
        assert np.allclose(mine, ref.grad.numpy(), atol=1e-5)
    with pytest.raises(RuntimeError, match="forward"):
        net.backward(a.grad.numpy())  # the cache is used once


def test_int8_device_part_tracks_the_float_one():
    net = DeviceNet([10, 16, 8], seed=3)
    x = RNG.standard_normal((400, 10)).astype(np.float32)
    q8 = quantize(net, x[:200])
    q, scale, zp = q8.forward(x[200:])
    assert q.dtype == np.int8 and zp == -128 and q.min() >= zp
    ref = net.forward(x[200:])
    err = np.abs((q.astype(np.float32) - zp) * scale - ref)
    assert err.mean() < 2 * scale and np.corrcoef(q8.dequantized(x[200:]).ravel(), ref.ravel())[0, 1] > 0.99
    assert q8.macs() == 10 * 16 + 16 * 8


def test_average_is_sample_weighted():
    a = [np.zeros(2, np.float32)]
    b = [np.full(2, 4.0, np.float32)]
    assert np.allclose(average([a, b], [3, 1])[0], 1.0)
    with pytest.raises(ValueError):
        average([], [])


def _task() -> TinyTask:
    groups = np.repeat([f"s{i}" for i in range(10)], 5)
    return TinyTask("industrial_iot", RNG.standard_normal((50, 4)), np.arange(50) % 3, groups,
                    ("a", "b", "c"), (6, 5), "t")


def test_clients_hold_whole_subjects_and_never_the_held_out_ones():
    task = _task()
    data = prepare(task, 3, test_fraction=0.2, seed=0)
    assert data.test_subjects == 2
    assert sum(len(c[1]) for c in data.clients) + len(data.y_test) == 50
    assert all(len(c[1]) % 5 == 0 and len(c[1]) > 0 for c in data.clients)
    with pytest.raises(ValueError, match="8 training subjects"):
        prepare(task, 9, test_fraction=0.2)
    assert device_sizes(task, 0) == [4, 6, 5] and device_sizes(task, 1) == [4, 6]
    with pytest.raises(ValueError, match="cut 3"):
        device_sizes(task, 3)


def test_fl_traffic_is_twice_the_tiny_models_float_bytes():
    task = _task()  # 4 -> 6 -> 5 -> 3
    params = (4 * 6 + 6) + (6 * 5 + 5) + (5 * 3 + 3)
    assert tiny_model_params(task) == params
    assert fl_bytes_per_client_round(task) == 2 * 4 * params


@pytest.mark.parametrize("argv, needle", [
    (["nowhere"], "unknown domain"),
    (["industrial_iot", "--clients", "0"], "--clients"),
    (["industrial_iot", "--mode", "gossip"], "invalid choice"),
    (["industrial_iot", "--quick", "--clients", "99"], "training subjects"),
])
def test_cli_refuses_bad_arguments(argv, needle, capsys):
    from shared import cli

    try:  # the console script: a mistake is one line on stderr and exit code 2
        code = cli.main(["split", *argv])
    except SystemExit as exc:  # argparse's own usage errors
        code = exc.code
    assert code == 2
    assert needle in capsys.readouterr().err
