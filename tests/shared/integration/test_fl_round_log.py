"""``tinylarge fl`` logs each round as it completes: RoundLog follows the ServerApp's stream (what ``flwr run
--stream`` writes, colour codes and all), reads whole lines only, and reports each round once."""

from __future__ import annotations

from pathlib import Path

from shared.integration.federated.runner import RoundLog

_G = "\x1b[92mINFO \x1b[0m:      "
#: the lines of a real two-round run (Flower 1.2x, FedAvg), in the order the stream gives them
STREAM = [
    f"{_G}Starting FedAvg strategy:",
    f"{_G}\t├── Number of rounds: 2",
    f"{_G}Initial global evaluation results: {{'held-out-accuracy': 0.2006, 'held-out-loss': 1.9846}}",
    f"{_G}[ROUND 1/2]",
    f"{_G}configure_train: Sampled 2 nodes (out of 2)",
    f"{_G}aggregate_train: Received 2 results and 0 failures",
    f"{_G}\t└──> Aggregated MetricRecord: {{'train-loss': 1.4437, 'train-accuracy': 0.36, 'array-bytes-in': 1332.0}}",
    f"{_G}Global evaluation",
    f"{_G}\t└──> MetricRecord: {{'held-out-accuracy': 0.2136, 'held-out-loss': 1.5590}}",
    f"{_G}[ROUND 2/2]",
    f"{_G}configure_train: Sampled 2 nodes (out of 2)",
    f"{_G}aggregate_train: Received 1 results and 1 failures",
    f"{_G}\t└──> Aggregated MetricRecord: {{'train-loss': 1.1164, 'train-accuracy': 0.66}}",
    f"{_G}Global evaluation",
    f"{_G}\t└──> MetricRecord: {{'held-out-accuracy': 0.5372, 'held-out-loss': 1.2750}}",
    f"{_G}Strategy execution finished in 12.99s",
    f"{_G}\tServerApp-side Evaluate Metrics:",
    f"{_G}\t{{ 0: {{'held-out-accuracy': '2.0065e-01', 'held-out-loss': '1.9846e+00'}},",
]


def test_each_round_is_reported_once_as_its_lines_arrive(tmp_path: Path) -> None:
    log = tmp_path / "flwr-run.log"
    log.write_bytes(b"")
    lines: list[str] = []
    rounds = RoundLog(log, lines.append)
    text = "\n".join(STREAM) + "\n"
    cut = text.index("0.2136") + 3  # the stream stops mid-line: nothing of that line is read yet
    with open(log, "a") as f:
        f.write(text[:cut])
    rounds.poll()
    assert lines == ["round 0 (the initial model): held-out accuracy 0.201"]
    with open(log, "a") as f:
        f.write(text[cut:])
    rounds.poll()
    rounds.poll()  # nothing new: nothing reported twice
    assert lines[1:] == [
        "round 1/2: 2 replies, 0 failures; train loss 1.444; held-out accuracy 0.214 (loss 1.559)",
        "round 2/2: 1 replies, 1 failures; train loss 1.116; held-out accuracy 0.537 (loss 1.275)",
    ]
    assert rounds.rounds_done == 2


def test_a_missing_log_or_unknown_lines_report_nothing(tmp_path: Path) -> None:
    lines: list[str] = []
    rounds = RoundLog(tmp_path / "not-yet.log", lines.append)
    rounds.poll()
    (tmp_path / "not-yet.log").write_text("Using SuperLink: tinylarge\nMetricRecord: {'held-out-accuracy': 0.5}\n")
    rounds.poll()  # a MetricRecord outside a round is not a round
    assert lines == [] and rounds.rounds_done == 0
