"""``tinylarge cluster config``: the generated nats-server configurations (no server needed)."""

from __future__ import annotations

import json
import re

import pytest

from shared.cli import main
from shared.cluster._js import device_partition
from shared.cluster.config import ClusterConfig, ClusterConfigError, write_cluster_config
from shared.cluster.worker import Share, parse_queue_url, topic_of


def test_three_nodes_route_to_each_other_with_own_stores_and_mqtt(tmp_path):
    info = write_cluster_config(ClusterConfig(tmp_path, nodes=3, partitions=6))
    texts = [open(c).read() for c in info["conf"]]
    assert info["replicas"] == 3 and info["partitions"] == 6
    assert len({re.search(r"store_dir: \"(.*)\"", t).group(1) for t in texts}) == 3
    for i, t in enumerate(texts):
        assert f"server_name: tl-n{i + 1}" in t
        assert f"listen: 127.0.0.1:{1883 + i}" in t and "stream_replicas: 3" in t
        routes = re.findall(r"nats-route://127.0.0.1:(\d+)", t)
        assert sorted(map(int, routes)) == [6222 + j for j in range(3) if j != i]
        assert '"tinylarge.*.*.inference": "tinylarge.part.{{partition(6,1,2)}}' in t
        assert "*.*.status" not in t and "smashed" not in t  # read as is by dashboards / the split server
    assert json.loads((tmp_path / "cluster.json").read_text())["client_ports"] == [4222, 4223, 4224]


def test_one_node_has_no_cluster_block_and_one_replica(tmp_path):
    info = write_cluster_config(ClusterConfig(tmp_path, nodes=1))
    assert "cluster {" not in open(info["conf"][0]).read() and info["replicas"] == 1


@pytest.mark.parametrize("kw", [{"nodes": 0}, {"partitions": 0}, {"client_port": 6222}])
def test_bad_layouts_are_refused(tmp_path, kw):
    with pytest.raises(ClusterConfigError):
        write_cluster_config(ClusterConfig(tmp_path, **kw))


def test_cli_mistakes_are_one_line_exit_2(tmp_path, capsys):
    assert main(["cluster", "config", "--out", str(tmp_path), "--nodes", "0"]) == 2
    assert main(["cluster", "config", "--out", str(tmp_path), "--pki", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "--nodes" in err[0] and "--device" in err[1]  # users need a device at least
    assert main(["cluster", "config", "--out", str(tmp_path / "c")]) == 0


def test_worker_share_queue_url_and_topic():
    assert Share.parse("1/3").owns(4) and not Share.parse("0/3").owns(4)
    for bad in ("3/3", "x", "1/0", "-1/2"):
        with pytest.raises(ValueError):
            Share.parse(bad)
    assert parse_queue_url("nats://a:1,b:2") == ["nats://a:1", "nats://b:2"]
    with pytest.raises(ValueError):
        parse_queue_url("mqtt://a:1")
    assert topic_of("$MQTT.msgs.tinylarge.part.3.healthcare.dev-1.inference") == "tinylarge/healthcare/dev-1/inference"
    assert device_partition("healthcare", "dev0", 4) == 3  # as nats-server 2.9.10 maps it (test_puback checks)
