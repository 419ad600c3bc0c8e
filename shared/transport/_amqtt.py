"""amqtt plugin for the embedded demo broker (private to :mod:`shared.transport.broker`).

amqtt 0.12's stock ``AnonymousAuthPlugin`` with ``allow_anonymous`` marks *every* session anonymous,
and amqtt keeps neither the subscriptions nor the offline QoS 1/2 queue of an anonymous session:
a consumer that disconnects loses what is published meanwhile. This plugin lets every client in
(the embedded broker is for local demos, bound to 127.0.0.1) without marking it anonymous, so
``clean_session=False`` sessions persist and queue QoS >= 1 messages while their client is away.
"""

from __future__ import annotations

from dataclasses import dataclass

from amqtt.plugins.base import BaseAuthPlugin
from amqtt.session import Session


class LocalDemoAuthPlugin(BaseAuthPlugin):
    """Accept every connection; keep sessions non-anonymous so persistent sessions work."""

    @dataclass
    class Config:
        """No options."""

    async def authenticate(self, *, session: Session) -> bool | None:
        session.is_anonymous = False
        return True
