"""``make results`` (``python -m bench.results``): docs/results.md from the JSON the commands write.

Every figure in the docs comes from a JSON file some command wrote (``make train-<domain>`` ->
``models/<domain>/metrics.json``, ``make demo-<domain>`` -> ``out/demo-<domain>/summary.json``, ``make bench``,
``make bench-faults``, ``make firmware-report``, ``make integration-report``, ...). This module reads the ones
present, writes one table per file to ``docs/results.md`` with the command that writes it and the file's date,
and names the command for each file that is missing instead of inventing a figure.

Headline figures (one short phrase each, e.g. a domain's cloud model against its baseline) are written into
``docs/results.md`` between markers, ``<!-- results:KEY -->...<!-- /results -->``; the same markers in
README.md and docs/*.md are rewritten with the same text, so no figure there is typed by hand. A marker whose
KEY the generator does not know is an error (the message lists the known keys).

``out/`` and ``models/`` are not committed, so ``docs/results.md`` is: it is the record of the last
``make results`` on the checkout that ran it (the dates say when each JSON was written), and running it again
after the commands refreshes it. Its output depends only on the JSON files and their dates (no "generated at"
stamp), so rerunning without new JSON leaves no diff.

    python -m bench.results [--root DIR] [--out docs/results.md] [--docs FILE ...] [--no-spans]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import _scale_model as _scale
from shared.errors import UserError

REPO = Path(__file__).resolve().parents[1]
RESULTS_MD = Path("docs/results.md")
#: a marker and its text; the text never spans another marker's start
SPAN = re.compile(r"<!-- results:([A-Za-z0-9_.-]+) -->((?:(?!<!--).)*?)<!-- /results -->", re.S)

Render = Callable[[Any], list[str]]


@dataclass(frozen=True)
class Source:
    """One JSON file, the command that writes it, and how its table looks."""

    title: str  #: the section heading in docs/results.md
    path: str  #: relative to the root
    command: str  #: what writes the file
    render: Render  #: the table's markdown lines
    note: str = ""  #: what the table measures (words only: no figures here)
    quick_command: str = ""  #: what writes it with the quick models (where a run says it used them)
    stamp: str = ""  #: a JSON whose ``quick`` says which models wrote this file, when the file itself does not


@dataclass(frozen=True)
class Headline:
    """One short generated phrase that the README and the domain pages quote through a marker."""

    key: str
    source: str  #: the title of the Source it reads
    text: Callable[[Any], str]


# ---------------------------------------------------------------- formatting


def fmt(v: Any) -> str:
    """One value as the tables print it: ints with thousands separators, floats to 3 decimals below 10 and
    1 above, lists joined by " / ", None as "-"; "|" escaped so a cell never splits."""
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        if math.isnan(v) or math.isinf(v):
            return str(v)
        if abs(v) < 10:
            return f"{v:.3f}"
        return f"{v:,.1f}" if abs(v) < 1000 else f"{v:,.0f}"
    if isinstance(v, list | tuple):
        return " / ".join(fmt(x) for x in v)
    return str(v).replace("|", "\\|").replace("\n", " ")


def _scalar(v: Any) -> bool:
    return v is None or isinstance(v, str | int | float | bool)


def flatten(data: dict[str, Any]) -> tuple[list[tuple[str, Any]], list[str]]:
    """(key, value) rows of a JSON object: scalars and lists of scalars as they are, objects of those one level
    down as ``key.sub``; what is nested deeper (configurations, confusion matrices) is left out and named."""
    rows: list[tuple[str, Any]] = []
    left: list[str] = []
    for k, v in data.items():
        if _scalar(v) or (isinstance(v, list) and all(_scalar(x) for x in v)):
            rows.append((k, v))
        elif isinstance(v, dict) and all(_scalar(x) or (isinstance(x, list) and all(_scalar(y) for y in x))
                                         for x in v.values()):
            rows += [(f"{k}.{s}", x) for s, x in v.items()]
        else:
            left.append(k)
    return rows, left


def key_value_table(data: Any) -> list[str]:
    if not isinstance(data, dict):
        raise ValueError(f"expected a JSON object, got {type(data).__name__}")
    rows, left = flatten(data)
    lines = ["| figure | value |", "|---|---|", *(f"| `{k}` | {fmt(v)} |" for k, v in rows)]
    if left:
        lines += ["", "Not shown (nested; in the JSON): " + ", ".join(f"`{k}`" for k in left) + "."]
    return lines


def rows_table(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None) -> list[str]:
    """A list of JSON objects as one table; ``columns`` default to every scalar key, in first-seen order."""
    if columns is None:
        seen: dict[str, None] = {}
        for r in rows:
            seen.update({k: None for k, v in r.items() if _scalar(v)})
        columns = list(seen)
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(r.get(c)) for c in columns) + " |" for r in rows]
    return lines


def _rows_of(data: Any) -> list[dict[str, Any]]:
    rows = data.get("rows") if isinstance(data, dict) else data
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise ValueError("expected a list of JSON objects (or an object with one under 'rows')")
    return rows


def _firmware_table(data: Any) -> list[str]:
    from shared.tiny.report import markdown_table

    return markdown_table(data).splitlines()


FAULT_COLUMNS = ("scenario", "promised", "published", "stored", "lost", "duplicated", "redelivered", "recovery_s")
INTEGRATION_COLUMNS = ("strategy", "domain", "metric", "value", "baseline", "baseline_value", "subjects",
                       "bytes_on_wire", "device_macs_per_inference", "quick")

# ---------------------------------------------------------------- sources and headlines

MODELS_NOTE = ("Everything on held-out subjects (split by subject, never by window). `quick` says whether these "
               "are the quick models (small populations, few epochs: they exercise the pipeline, their figures "
               "mean little) or the full ones.")
TINY_NOTE = "The device model: float and int8 on held-out subjects, its size, per-class figures."
DEMO_NOTE = ("One end-to-end run: simulated devices (some as C firmware, one under QEMU) -> MQTT -> the cloud "
             "model -> the store, on a population no model saw. `quick_models` says whether it ran on the quick "
             "models. Latencies are from device publish to the stored result on whatever else the machine ran.")


def domain_sources(domain: str) -> list[Source]:
    return [
        Source(f"{domain}: models", f"models/{domain}/metrics.json", f"make train-{domain}", key_value_table,
               MODELS_NOTE, f"tinylarge train {domain} --quick", f"models/{domain}/stamp.json"),
        Source(f"{domain}: tiny model", f"models/{domain}/tiny_metrics.json", f"make train-{domain}",
               key_value_table, TINY_NOTE, f"tinylarge train {domain} --quick", f"models/{domain}/stamp.json"),
        Source(f"{domain}: demo", f"out/demo-{domain}/summary.json", f"make demo-{domain}", key_value_table,
               DEMO_NOTE, f"tinylarge demo {domain} --quick"),
    ]


PLATFORM_SOURCES = [
    Source("healthcare: beat detector on real PPG", "out/healthcare/ppg_eval.json",
           ".venv/bin/python -m healthcare.ppg_eval", lambda d: rows_table(_rows_of(d)),
           "The device's beat detector and HR quality gate on whole public PPG recordings, window by window, "
           "against an independent reference (an ECG where the recording has one, else two PPG detectors' "
           "consensus); `withheld` is the share of windows whose HR the device withholds; see "
           "[healthcare_ppg.md](healthcare_ppg.md) for the method."),
    Source("firmware: parity and footprint", "out/firmware/report.json", "make firmware-report", _firmware_table,
           "Every model compiled to C in both arithmetics and checked value by value against LiteRT's reference "
           "kernels (`litert`) and TFLite Micro (`tflm`) on random inputs, on the host and on the Cortex-M4 under "
           "QEMU; flash, RAM (arena + measured stack) and instructions per inference under QEMU `-icount` "
           "(instructions, not cycles). See [firmware/README.md](../firmware/README.md) for the arithmetic."),
    Source("transport: pipeline benchmark", "out/bench/pipeline.json", "make bench", key_value_table,
           "Devices publish QoS 1 messages back to back through Mosquitto; the full service (validation, store, "
           "batched transformer) against a subscriber that only counts, same broker and load generator. `ratio` "
           "is the service's rate over the raw one (goal >= 0.8, with p99 <= 50 ms at half the saturated rate; "
           "not met on the 2-core machine: see the profile); `superseded` counts windows the service "
           "skipped scoring under the flood because a newer one of the same subject was queued. The raw rate is "
           "limited by the Python load generator and varies from run to run."),
    Source("reliability: fault injection", "out/bench/faults.json", "make bench-faults",
           lambda d: rows_table(_rows_of(d), FAULT_COLUMNS),
           "Real Mosquitto with the generated configuration's queue limits, VictoriaMetrics and consumer "
           "processes; each scenario injects one fault into a paced load. `promised: no` marks the Mosquitto "
           "SIGKILL row: Mosquitto acknowledges before it persists, so a SIGKILL may lose what was acknowledged "
           "but not yet saved (it never duplicates); SIGTERM is the lossless restart. Recovery times stretch on a "
           "loaded machine."),
    Source("scale: NATS cluster benchmark", "out/bench/scale.json", "make bench-scale", _scale.scale_table,
           "The healthcare cloud on a NATS JetStream cluster (`tinylarge cluster config`'s layout, 8 partitions) "
           "with PostgreSQL: devices are paho clients publishing QoS 1 to the nodes' MQTT listeners; rates are "
           "published -> stored, latencies publish -> the risk message back; CPU per message from each "
           "process's /proc clocks. Two shared cores show no speed-up from more workers: read the cost per "
           "message. See [scale.md](scale.md)."),
    Source("scale: capacity model", "out/bench/scale.json", "make bench-scale", _scale.capacity_table,
           "Computed from the benchmark's measured cost per message and each domain's window cadence; see "
           "[scale.md](scale.md#capacity-model)."),
    Source("integration strategies", "out/integration/report.json", "make integration-report",
           lambda d: rows_table(_rows_of(d), INTEGRATION_COLUMNS),
           "One row per strategy x domain x metric, on held-out subjects; `bytes_on_wire` per client or device; "
           "`quick` marks the rows of the quick form (small populations or few rounds/epochs: they exercise the "
           "strategy, their figures mean little). The strategies are described in "
           "[integration/](integration/distill.md)."),
]


def _quick(m: dict[str, Any], domain: str) -> str:
    q = m.get("quick", m.get("quick_models"))
    return f"; quick models, `make train-{domain}` for the full ones" if q else ""


def _n(m: dict[str, Any], key: str) -> str:
    return fmt(m.get(key))


DOMAIN_HEADLINES: dict[str, Callable[[dict[str, Any]], str]] = {
    "healthcare": lambda m: (f"deterioration within {m.get('horizon_h', 6):g} h: AUROC {_n(m, 'risk_auroc')} vs "
                             f"NEWS2 {_n(m, 'news2_auroc')} ({_n(m, 'test_patients')} held-out patients"
                             f"{_quick(m, 'healthcare')})"),
    "industrial_iot": lambda m: (f"failure within {m.get('horizon_h', 168):g} h: AUROC {_n(m, 'risk_auroc')} vs "
                                 f"ISO 10816-3 {_n(m, 'iso_auroc')} ({_n(m, 'test_machines')} held-out machines"
                                 f"{_quick(m, 'industrial_iot')})"),
    "vehicles": lambda m: (f"crash or near miss within {_n(m, 'horizon_trips')} segments: AUROC "
                           f"{_n(m, 'risk_auroc')} vs points per 100 km {_n(m, 'baseline_auroc')} "
                           f"({_n(m, 'test_vehicles')} held-out vehicles{_quick(m, 'vehicles')})"),
    "metaverse_eeg": lambda m: (f"time in the target zone: agent {_n(m, 'agent_time_in_zone')}, rule "
                                f"{_n(m, 'rule_time_in_zone')}, no adaptation {_n(m, 'none_time_in_zone')} "
                                f"({_n(m, 'eval_users')} unseen users{_quick(m, 'metaverse_eeg')})"),
}


def _demo_headline(domain: str) -> Callable[[Any], str]:
    def text(s: dict[str, Any]) -> str:
        quick = "; quick models" if s.get("quick_models") else ""
        return (f"{_n(s, 'devices')} devices x {s.get('duration', '?')}: {_n(s, 'published')} published, "
                f"{_n(s, 'stored')} stored, {_n(s, 'deadletters')} dead letters ({_n(s, 'deadletters_injected')} "
                f"injected), latency p50 {_n(s, 'p50_ms')} ms{quick}")
    return text


def _firmware_headline(r: dict[str, Any]) -> str:
    goals = r.get("goals", {})
    checked = [m for m in r.get("models", []) if "parity" in m]
    both = set(goals.get("parity_litert_bit_exact", [])) & set(goals.get("parity_tflm_bit_exact", []))
    return (f"{len(both)} of {len(checked)} models bit-exact on the host and the Cortex-M4 with LiteRT's reference "
            f"kernels (`--arithmetic litert`, the default) and with TFLite Micro (`--arithmetic tflm`), "
            f"{fmt(r.get('parity_inputs'))} random inputs each (LiteRT's default interpreter, XNNPACK, differs from "
            f"both on rounding ties)")


def _pipeline_headline(p: dict[str, Any]) -> str:
    return (f"{_n(p, 'msgs_per_s')} msgs/s through the service, {_n(p, 'ratio')} of the broker's raw rate; "
            f"{_n(p, 'lost')} lost, {_n(p, 'duplicated')} duplicated of {_n(p, 'messages')}")


def _faults_headline(rows: Any) -> str:
    promised = [r for r in _rows_of(rows) if r.get("promised", True)]
    clean = [r for r in promised if r.get("lost") == 0 and r.get("duplicated") == 0]
    return f"{len(clean)} of {len(promised)} promised fault scenarios lost and duplicated nothing"


def sources(domains: Sequence[str]) -> list[Source]:
    return [s for d in domains for s in domain_sources(d)] + PLATFORM_SOURCES


def headlines(domains: Sequence[str]) -> list[Headline]:
    out = [Headline(d, f"{d}: models", DOMAIN_HEADLINES[d]) for d in domains if d in DOMAIN_HEADLINES]
    out += [Headline(f"{d}-demo", f"{d}: demo", _demo_headline(d)) for d in domains]
    out += [Headline("firmware", "firmware: parity and footprint", _firmware_headline),
            Headline("pipeline", "transport: pipeline benchmark", _pipeline_headline),
            Headline("faults", "reliability: fault injection", _faults_headline),
            Headline("scale", "scale: NATS cluster benchmark", _scale.scale_headline),
            Headline("capacity", "scale: capacity model", _scale.capacity_headline)]
    return out


# ---------------------------------------------------------------- docs/results.md


def slug(title: str) -> str:
    """The anchor GitHub gives a heading (lower case; punctuation but '-' and '_' dropped; spaces to '-')."""
    return re.sub(r"[^\w\- ]", "", title.lower()).replace(" ", "-")


def _date(path: Path) -> str:
    return dt.datetime.fromtimestamp(path.stat().st_mtime, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def _quick_flag(root: Path, src: Source, data: Any) -> bool | None:
    """Whether a run used the quick models: ``quick`` in metrics.json, ``quick_models`` in a demo's summary,
    else ``quick`` in the source's stamp file; None where nothing says."""
    for blob in (data, _read(root / src.stamp) if src.stamp else None):
        if isinstance(blob, dict):
            q = blob.get("quick", blob.get("quick_models"))
            if isinstance(q, bool):
                return q
    return None


def _read(path: Path) -> Any | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _load(root: Path, src: Source) -> Any | None:
    path = root / src.path
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise UserError(f"{path}: not JSON ({e}); rerun `{src.command}` to write it again") from None


def figures(root: Path, domains: Sequence[str]) -> dict[str, str]:
    """Every headline KEY -> its phrase, from the JSON under ``root`` (missing JSON: the command to run)."""
    by_title = {s.title: s for s in sources(domains)}
    out: dict[str, str] = {}
    for h in headlines(domains):
        src = by_title[h.source]
        data = _load(root, src)
        try:
            out[h.key] = f"not yet measured on this checkout: `{src.command}`" if data is None else h.text(data)
        except (AttributeError, KeyError, TypeError, ValueError) as e:
            raise UserError(f"{root / src.path}: not in the shape `{src.command}` writes ({e}); rerun it") from None
        if "<!--" in out[h.key] or "|" in out[h.key]:
            raise ValueError(f"headline {h.key}: {out[h.key]!r} would break its marker or table cell")
    return out


def span(key: str, text: str) -> str:
    return f"<!-- results:{key} -->{text}<!-- /results -->"


def build(root: Path, domains: Sequence[str]) -> str:
    """The whole text of docs/results.md for the JSON files under ``root``."""
    srcs = sources(domains)
    figs = figures(root, domains)
    by_title = {s.title: s for s in srcs}
    loaded = {s.title: _load(root, s) for s in srcs}
    lines = [
        "# Measured results",
        "",
        "Generated by `make results` (`python -m bench.results`, in `bench/results.py`) from the JSON files the "
        "commands below write; do not edit it by hand. `out/` and `models/` are not committed, so this page is: it "
        "records the last `make results` on the checkout that ran it, with the date each JSON was written. Run the "
        "commands, then `make results`, to refresh it; the headline figures below are quoted in README.md and the "
        "domain pages between markers that the same command rewrites, so nothing there is typed by hand.",
        "",
        "Simulated data only, unless a table says otherwise.",
        "",
        "## Headline figures",
        "",
        "| key | figure | from |",
        "|---|---|---|",
    ]
    for h in headlines(domains):
        lines.append(f"| `{h.key}` | {span(h.key, figs[h.key])} | [{h.source}](#{slug(h.source)}) |")
    missing = [s for s in srcs if loaded[s.title] is None]
    if missing:
        lines += ["", "## Not yet measured on this checkout", ""]
        lines += [f"- [{s.title}](#{slug(s.title)}): run `{s.command}` (writes `{s.path}`), then `make results`"
                  for s in missing]
    for title, src in by_title.items():
        lines += ["", f"## {title}", ""]
        data = loaded[title]
        if data is None:
            lines.append(f"Not yet measured on this checkout: run `{src.command}` (it writes `{src.path}`), "
                         f"then `make results`.")
            continue
        quick = _quick_flag(root, src, data)
        cmd = src.quick_command if quick and src.quick_command else src.command
        if isinstance(data, dict) and isinstance(data.get("command"), str):
            cmd = data["command"]
        size = {None: "", False: ", full models", True: ", **quick models** (they exercise the pipeline; their "
                "figures mean little: `" + src.command + "` for the full ones)"}[quick]
        lines.append(f"`{cmd}` wrote `{src.path}` on {_date(root / src.path)}{size}.")
        if src.note:
            lines += ["", src.note]
        try:
            table = src.render(data)
        except (AttributeError, KeyError, TypeError, ValueError) as e:
            raise UserError(f"{root / src.path}: not in the shape `{src.command}` writes ({e}); rerun it") from None
        lines += ["", *table]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- markers in README.md and docs/*.md


def read_spans(text: str) -> dict[str, str]:
    """KEY -> text of every ``<!-- results:KEY -->text<!-- /results -->`` marker (the last one wins)."""
    return {m.group(1): m.group(2) for m in SPAN.finditer(text)}


def fill_spans(text: str, figs: dict[str, str], where: str = "text") -> str:
    """``text`` with every marker's content replaced by its figure; UserError for a KEY with no figure."""
    unknown = sorted({k for k in read_spans(text) if k not in figs})
    if unknown:
        raise UserError(f"{where}: no generated figure for results marker(s) {', '.join(unknown)}; "
                        f"known: {', '.join(sorted(figs))}")
    return SPAN.sub(lambda m: span(m.group(1), figs[m.group(1)]), text)


def default_docs(root: Path) -> list[Path]:
    return [root / "README.md", *sorted(p for p in (root / "docs").glob("*.md") if p.name != RESULTS_MD.name)]


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.results", description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, default=REPO, help="where models/ and out/ are (default: the repository)")
    ap.add_argument("--out", type=Path, default=None, help="default: ROOT/docs/results.md")
    ap.add_argument("--docs", type=Path, nargs="*", default=None,
                    help="files whose results markers are rewritten (default: ROOT/README.md and ROOT/docs/*.md)")
    ap.add_argument("--domains", default="", help="comma-separated (default: every registered domain)")
    ap.add_argument("--no-spans", action="store_true", help="write docs/results.md only")
    args = ap.parse_args(argv)
    if args.domains:
        domains = [d for d in args.domains.split(",") if d]
    else:
        from shared import domain as registry

        domains = list(registry.names())
    root = args.root.resolve()
    out = args.out or root / RESULTS_MD
    text = build(root, domains)
    out.parent.mkdir(parents=True, exist_ok=True)
    changed = not out.exists() or out.read_text() != text
    if changed:
        out.write_text(text)
    print(f"results: {out} {'written' if changed else 'unchanged'}")
    if args.no_spans:
        return 0
    figs = read_spans(text)
    for doc in default_docs(root) if args.docs is None else args.docs:
        if not doc.exists() or doc.resolve() == out.resolve():
            continue
        old = doc.read_text()
        new = fill_spans(old, figs, str(doc))
        if new != old:
            doc.write_text(new)
            print(f"results: {doc}: {len(read_spans(new))} marked figure(s) rewritten")
    return 0


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except UserError as e:
        print(f"results: {e}", file=sys.stderr)
        raise SystemExit(2) from None
