"""The one kind of error a user can fix, and how the command line reports it.

Raise :class:`UserError` (or a subclass) with a message that says what is wrong and what to do; the
``tinylarge`` command prints it as one line on stderr and exits with code 2 (``--debug`` or
``TINYLARGE_DEBUG=1`` shows the traceback instead). :func:`user_message` also recognises the errors the
platform's parts raise for outside mistakes: an unknown domain, a firmware build that cannot start, a
broker that cannot be reached.
"""

from __future__ import annotations

import sys


class UserError(Exception):
    """A mistake the user can fix; the message names it and what to do."""


def user_message(exc: BaseException) -> str | None:
    """The one line to print for ``exc`` when it is a user's mistake, else None (a bug: show the traceback)."""
    from shared.domain import DomainError

    if isinstance(exc, UserError | DomainError):
        return str(exc)
    try:
        from shared.tiny.targets import FirmwareError
    except ImportError:  # pragma: no cover - the firmware tools are part of every install
        FirmwareError = ()  # type: ignore[assignment]  # noqa: N806
    if FirmwareError and isinstance(exc, FirmwareError):
        return f"firmware: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
    if isinstance(exc, ConnectionError):
        return f"{_first_line(exc)}: {_connection_advice(str(exc))}"
    serial = sys.modules.get("serial")  # pyserial, only when a command opened a port
    if serial is not None and isinstance(exc, serial.SerialException):
        return f"serial port: {_first_line(exc)}; check --serial (the device path, e.g. /dev/ttyACM0) and its rights"
    return None


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _connection_advice(text: str) -> str:
    """What to do about a broker (or store) connection that failed, from the reason it gives."""
    low = text.lower()
    if "certificate_verify_failed" in low or "certificate verify failed" in low:
        return "the broker's certificate is not trusted: give --ca with the CA that signed it (ca.crt of tinylarge pki)"
    if "not authorized" in low or "bad user name or password" in low or "bad username or password" in low:
        return "fix the user name and password in the URL (mqtt://user:pass@host:port) or the client certificate"
    if "mqtts://" in low and ("reset" in low or "eof" in low):
        return "is that port the broker's TLS listener? (mqtt:// for a plain one)"
    if "tls" in low or "ssl" in low:
        return "check mqtts:// against the broker's TLS port, and --ca / --cert / --key"
    return "start the broker (or the store) or fix --mqtt / --store"
