"""Start and stop a domain's cloud side the same way everywhere: store, model, MQTT consumer, status.

:func:`run_cloud` is a context manager: it opens the store, builds the domain's service (a
:class:`shared.runtime.service.SubjectService`, from ``DomainHooks.service``), rebuilds history from the
store, subscribes, and publishes the service's counts on its retained ``status``; on exit it drains the
scoring queue, then stops the client and closes the store, in that order. :func:`cloud_for` does the
same for any service factory (tests, benchmarks). :func:`serve_main` is ``tinylarge serve DOMAIN``.
"""

from __future__ import annotations

import argparse
import logging
import math
import signal
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("tinylarge.runtime.cloud")


@dataclass
class Cloud:
    url: str
    client: Any
    store: Any
    service: Any
    consumer: Any


#: build_service(store, publish, on_result) -> SubjectService
ServiceFactory = Callable[[Any, Callable[[str, str, dict], None], Callable[[dict], None] | None], Any]


@contextmanager
def run_cloud(domain: Any, args: argparse.Namespace | None, mqtt: str, store_url: str, models_dir: Path,
              on_result: Callable[[dict], None] | None = None, client_id: str | None = None,
              subjects: Iterable[str] | None = None) -> Iterator[Cloud]:
    """A registered domain's cloud on the models of ``models_dir`` (``domain``: a Domain or its name);
    ``subjects``: the deployment's subject ids (site streams are stored only for known subjects)."""
    from shared.domain import Domain, get

    d = domain if isinstance(domain, Domain) else get(domain)
    try:
        build = d.hooks.service(Path(models_dir))
    except (OSError, ValueError, RuntimeError, KeyError) as exc:  # a corrupt or missing model file
        from shared.runtime.app import models_do_not_load

        raise models_do_not_load(d.name, models_dir, exc) from exc
    with cloud_for(d.name, args, mqtt, store_url, build, d.model_ids[1], on_result=on_result,
                   client_id=client_id, subjects=subjects) as cloud:
        yield cloud


@contextmanager
def cloud_for(domain: str, args: argparse.Namespace | None, mqtt: str, store_url: str,
              build_service: ServiceFactory, model_id: str, on_result: Callable[[dict], None] | None = None,
              client_id: str | None = None, subjects: Iterable[str] | None = None) -> Iterator[Cloud]:
    """Store + service + MQTT consumer, started; stopped in order (scoring drained first)."""
    from shared.runtime.app import StatusReporter, client_config, publisher
    from shared.storage.factory import open_store
    from shared.transport.consumer import Consumer, status_will
    from shared.transport.mqtt import MqttClient

    client = MqttClient(client_config(args, mqtt, client_id or f"tinylarge-{domain}-service",
                                      will=status_will(domain, "cloud", model_id)))
    store = open_store(store_url)
    try:
        service = build_service(store, publisher(client, domain), on_result)
    except Exception:
        store.close()
        raise
    service.provision(subjects or ())
    loaded = service.rebuild()
    if loaded:
        log.info("rebuilt %d history steps from the store", loaded)
    service.start()
    skew = getattr(args, "max_ts_skew_s", None)
    consumer = Consumer(client, domain, service.handlers(), service.batch_handlers(),
                        max_future_skew_s=service.cfg.max_future_skew_s if skew is None else skew,
                        min_ts_ms=service.cfg.min_ts_ms)

    def counts() -> dict[str, int]:
        c, st, tr = consumer.counts, store.counts, client.counts
        return {"received": c.get("received", 0), "accepted": c.get("accepted", 0),
                "deadletters": c.get("deadletters", 0), "stored_points": st.get("written", 0),
                "duplicates": st.get("duplicates", 0), "dropped": st.get("dropped", 0) + tr.get("dropped", 0),
                "spooled": st.get("spooled", 0), "scored": service.counts["scored"],
                "alerts": service.counts["alerts"], "superseded": service.counts["superseded"]}

    status = StatusReporter(publisher(client, domain), "cloud", service.model_id, counts,
                            every_s=service.cfg.status_every_s)
    try:
        client.start()
        for topic_filter, handler in service.subscriptions().items():  # device statuses: known subjects
            client.subscribe(topic_filter, handler)
        consumer.start()
        status.start()
        yield Cloud(mqtt, client, store, service, consumer)
    finally:
        service.stop()
        if client.connected:
            status.stop()
        client.stop()
        store.close()


def _stop_on_sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # unwinds run_cloud: scoring drained, client and store closed


def serve_main(domain: str, argv: Sequence[str] | None = None) -> int:
    """``tinylarge serve DOMAIN``: run the cloud service until interrupted (or ``--duration``)."""
    from shared.cli import add_endpoint_args
    from shared.domain import get
    from shared.protocol.endpoints import redact_url
    from shared.runtime.app import check_endpoints, endpoints, require_models
    from shared.runtime.scenario import parse_duration

    d = get(domain)
    ap = argparse.ArgumentParser(prog=f"tinylarge serve {domain}", allow_abbrev=False,
                                 description=f"{d.name}: the cloud service ({d.large_model} beside {d.baseline})")
    ap.add_argument("--models", type=Path, default=d.models_dir, help="trained models folder (default %(default)s)")
    ap.add_argument("--quick", action="store_true", help="if the models are missing, train quick ones first")
    add_endpoint_args(ap)
    ap.add_argument("--client-id", default=f"tinylarge-{domain}-service", help="MQTT client id (persistent "
                    "session: keep it stable so a restart receives what it missed)")
    ap.add_argument("--max-ts-skew-s", type=float, default=None, help="dead-letter messages whose ts is further "
                    "ahead of this machine's clock (default: the service's, 300 s)")
    ap.add_argument("--subjects-file", type=Path, default=None, help="the deployment's subject ids, one a line: "
                    "site streams (e.g. EHR charts) are stored for these and for devices that reported themselves")
    ap.add_argument("--duration", default=None, help="stop after this long (30s, 10m, 2h); default: until Ctrl-C")
    ap.add_argument("--queue", default=None, help="nats://host:port[,host:port]: run as a scoring worker on a NATS "
                    "JetStream cluster (tinylarge cluster) instead of subscribing to --mqtt")
    ap.add_argument("--worker", default="0/1", help="with --queue: this worker's static share k/n of the partitions")
    args = ap.parse_args(argv)
    try:
        limit_s = math.inf if args.duration is None else parse_duration(args.duration)
    except ValueError as exc:
        ap.error(f"--duration: {exc}")
    check_endpoints(args)
    if args.queue:
        from shared.cluster.worker import Share, parse_queue_url

        try:
            parse_queue_url(args.queue)
            Share.parse(args.worker)
        except ValueError as exc:
            ap.error(str(exc))
    require_models(d.name, args.models, args.quick)
    from shared.runtime.service import read_subjects_file

    subjects = read_subjects_file(args.subjects_file) if args.subjects_file is not None else None
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    d.hooks.ensure_trained(args.models, quick=args.quick)
    if args.queue:  # the scale-out path (shared.cluster): the same service, fed by partitions
        from shared.cluster.worker import serve_queue
        from shared.protocol.endpoints import store_url

        return serve_queue(d, args, store_url(args.store), d.hooks.service(args.models), limit_s)
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    with endpoints(args) as ep, run_cloud(d, args, ep.mqtt, ep.store, args.models,
                                          client_id=args.client_id, subjects=subjects) as svc:
        print(f"serving {domain} on {redact_url(svc.url)}, storing to {redact_url(ep.store)}; Ctrl-C to stop",
              flush=True)
        try:
            deadline = time.monotonic() + limit_s
            while time.monotonic() < deadline:
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
    return 0
