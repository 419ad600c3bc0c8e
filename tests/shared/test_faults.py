"""Nothing lost, nothing duplicated: faults injected into real processes while the load runs.

Pipeline: 20 device ids over 4 QoS 1 publisher connections -> Mosquitto (persistence on) -> a consumer
PROCESS (``python -m bench._fault_consumer``) -> SQLite or VictoriaMetrics. Each test injects one fault
mid-stream (see :mod:`bench._fault_run`), waits for the pipeline to catch up, and compares what the
load generator published with the raw rows of the store, key by key.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench._fault_run import ScenarioConfig, run_scenario

SMALL = ScenarioConfig(devices=20, messages=1000, rate_hz=400.0, publishers=4, fault_at=0.3, outage_s=1.0,
                       store_outage_s=3.0, settle_timeout_s=60.0, quiet_s=8.0)
# the VictoriaMetrics outage is longer than the others: publish slowly enough to go on past it
SLOW = ScenarioConfig(**{**SMALL.__dict__, "rate_hz": 150.0, "fault_at": 0.2})


def _assert_exact(result, lossless: bool = True) -> None:
    detail = result.detail
    assert detail["publisher_acked_all"], f"the broker never acknowledged everything: {detail['publisher']}"
    assert result.published == SMALL.messages and detail["publisher_refused"] == 0
    assert result.duplicated == 0, f"{result.duplicated} points stored more than once"
    assert result.phantom == 0 and result.ts_mismatch == 0, result.row()
    assert result.deadletters == 0, detail["consumer_final"]
    if lossless:
        assert result.lost == 0, f"lost {result.lost}, published at positions {detail['lost_at'][:20]}"
        assert result.stored == result.published
        assert result.recovery_s is not None


@pytest.mark.broker
def test_broker_restart_loses_nothing(tmp_path: Path, mosquitto_factory) -> None:
    """Mosquitto stopped with SIGTERM (saves its database) and restarted on the same port mid-stream."""
    result = run_scenario("broker-restart", tmp_path, SMALL, mosquitto_factory)
    _assert_exact(result)
    assert result.detail["publisher"]["reconnects"] >= SMALL.publishers  # the fault did happen


@pytest.mark.broker
def test_broker_sigkill_duplicates_nothing_and_loses_at_most_the_inflight_instant(
        tmp_path: Path, mosquitto_factory) -> None:
    """Mosquitto SIGKILLed (autosave after every change) and restarted.

    Mosquitto acknowledges before it saves, and does not count messages in flight to a connected
    subscriber as changes, so the few messages acknowledged at the instant of the kill may be gone
    (see bench/_fault_run.py). Everything else arrives exactly once: what is lost must have been
    published before the kill, within the in-flight windows (20 broker->consumer, 32 per publisher).
    """
    result = run_scenario("broker-kill", tmp_path, SMALL, mosquitto_factory)
    _assert_exact(result, lossless=False)
    n_begin, n_down, _ = result.detail["fault_at"]
    window = 20 + 32 * SMALL.publishers
    assert result.lost <= window
    assert all(n_begin - window <= i < n_down for i in result.detail["lost_at"]), result.detail["lost_at"]
    assert result.detail["publisher"]["reconnects"] >= SMALL.publishers


@pytest.mark.broker
def test_consumer_sigkill_and_restart_loses_nothing(tmp_path: Path, mosquitto_factory) -> None:
    """The consumer process SIGKILLed mid-stream; restarted with the same client id, it receives what
    it missed from its persistent session, and what it stored but had not acknowledged is redelivered
    and absorbed by the store."""
    result = run_scenario("consumer-kill", tmp_path, SMALL, mosquitto_factory)
    _assert_exact(result)
    assert result.detail["consumer_runs"] == 2
    # the second process saw only what the first had not acknowledged
    assert result.detail["consumer_final"]["accepted"] < SMALL.messages


@pytest.mark.broker
@pytest.mark.influx
def test_consumer_sigkill_with_the_influx_store_loses_nothing(tmp_path: Path, mosquitto_factory,
                                                              victoria_metrics_factory) -> None:
    """The consumer SIGKILLed while it writes to VictoriaMetrics: ``InfluxStore.write`` returned (and the
    message was acknowledged) only once the point was synced to the on-disk spool, so the restarted
    consumer's store ships what the killed one had not sent; a batch sent twice is deduplicated."""
    result = run_scenario("consumer-kill-influx", tmp_path, SMALL, mosquitto_factory, victoria_metrics_factory)
    _assert_exact(result)
    assert result.promised and result.detail["consumer_runs"] == 2
    counts = result.detail["consumer_final"]
    assert counts["accepted"] < SMALL.messages and counts["store_dropped"] == 0, counts


@pytest.mark.broker
@pytest.mark.influx
def test_store_outage_is_absorbed_by_the_spool(tmp_path: Path, mosquitto_factory,
                                               victoria_metrics_factory) -> None:
    """VictoriaMetrics stopped for 3 s while the consumer writes; the spool takes the points and drains."""
    result = run_scenario("store-outage", tmp_path, SLOW, mosquitto_factory, victoria_metrics_factory)
    _assert_exact(result)
    counts = result.detail["consumer_final"]
    assert counts["store_spooled"] > 0 and counts["store_drained"] == counts["store_spooled"], counts
    assert counts["store_dropped"] == 0


@pytest.mark.broker
def test_network_cut_between_publishers_and_broker_loses_nothing(tmp_path: Path, mosquitto_factory) -> None:
    """The publishers' TCP links cut (a loopback proxy drops them and stops listening) for 1 s."""
    result = run_scenario("network-cut", tmp_path, SMALL, mosquitto_factory)
    _assert_exact(result)
    assert result.detail["publisher"]["reconnects"] >= SMALL.publishers


@pytest.mark.broker
def test_unpaced_burst_is_stored_in_full_on_the_generated_queue_limits(tmp_path: Path, mosquitto_factory) -> None:
    """5,000 messages published as fast as Mosquitto takes them (issue 13 item 1): with Mosquitto's default
    ``max_queued_messages 1000`` about 1,500 were stored; with the generated configuration's limits
    (``brokerconf.delivery_lines``, which the fixture uses) every one is."""
    cfg = ScenarioConfig(**{**SMALL.__dict__, "burst_messages": 5000})
    result = run_scenario("burst", tmp_path, cfg, mosquitto_factory)
    assert result.published == 5000 and result.detail["publisher_acked_all"]
    assert result.lost == 0, f"lost {result.lost} of {result.published}"
    assert result.stored == 5000 and result.duplicated == 0 and result.deadletters == 0
