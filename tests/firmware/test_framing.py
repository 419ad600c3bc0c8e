"""Serial framing: the Python codec (shared.tiny.frames) and the C codec (firmware/net/tl_frame.c)
agree byte for byte, and both resynchronise after noise and corruption."""

from __future__ import annotations

import subprocess

import pytest

from shared.tiny.frames import FLAG, KIND_LOG, FrameDecoder, crc16, encode_frame, encode_message
from tests._tools import require_tool
from tests.firmware import _fw

FW = _fw.__file__.rsplit("/tests/", 1)[0] + "/firmware"


def test_crc_check_value():
    assert crc16(b"123456789") == 0x29B1  # CRC-16/CCITT-FALSE


def test_round_trip_and_layout():
    f = encode_message("inference", b'{"a":1}')
    assert f[0] == FLAG and f[-1] == FLAG and f[1] == 1 and (f[2] << 8 | f[3]) == len(b'inference\x00{"a":1}')
    [frame] = list(FrameDecoder().feed(f))
    assert frame.message() == ("inference", b'{"a":1}')


def test_resync_after_noise_and_corruption():
    good1, good2 = encode_message("status", b"{}"), encode_frame(KIND_LOG, b"hello ~ world")
    bad = bytearray(encode_message("inference", b'{"x":2}'))
    bad[8] ^= 0x01  # one flipped bit in the payload
    dec = FrameDecoder()
    frames = list(dec.feed(b"boot banner\r\n" + good1 + bytes(bad) + b"\x7e\x7e" + good2))
    assert [f.payload for f in frames] == [b"status\x00{}", b"hello ~ world"]
    assert dec.bad >= 1 and dec.skipped_bytes >= len(b"boot banner\r\n")


def test_split_feeds_and_oversize_length():
    data = encode_message("inference", b"{}" * 100)
    dec = FrameDecoder()
    got = [f for i in range(len(data)) for f in dec.feed(data[i: i + 1])]
    assert len(got) == 1
    dec2 = FrameDecoder()
    assert not list(dec2.feed(b"\x7e\x01\xff\xff" + b"\x00" * 10)) and dec2.bad == 1
    with pytest.raises(ValueError, match="exceeds"):
        encode_frame(1, b"x" * 5000)


@pytest.mark.firmware
def test_c_decoder_reads_python_frames(tmp_path):
    gcc = require_tool("gcc")
    exe = tmp_path / "frames"
    subprocess.run([gcc, "-std=c99", "-Wall", "-Wextra", "-Werror", "-fsanitize=address,undefined", "-g",
                    "-DTL_STANDALONE", f"-I{FW}/net", f"{FW}/net/fuzz/fuzz_frame.c", f"{FW}/net/tl_frame.c",
                    "-o", str(exe)], check=True)
    bad = bytearray(encode_message("x", b"1"))
    bad[-2] ^= 0xFF  # broken CRC
    stream = b"noise" + encode_message("status", b'{"s":1}') + bytes(bad) + encode_frame(KIND_LOG, b"log line")
    out = subprocess.run([str(exe)], input=stream, capture_output=True, check=True).stdout
    assert b"frame kind=1 len=14 payload=status\x00{\"s\":1}" in out
    assert b"frame kind=2 len=8 payload=log line" in out
    assert out.rstrip().endswith(b"ok=2 bad=1")


@pytest.mark.firmware
def test_c_encoder_output_decodes_in_python():
    app = _fw.built("host").artifacts["app"]
    out = subprocess.run([str(app), "--input", str(_fw.sensor_file())], capture_output=True, check=True).stdout
    dec = FrameDecoder()
    frames = list(dec.feed(out))
    assert dec.bad == 0 and dec.skipped_bytes == 0 and len(frames) == len(_fw.windows()) + 2
