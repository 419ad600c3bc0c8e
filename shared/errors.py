"""The one kind of error a user can fix, and how the command line reports it.

Raise :class:`UserError` (or a subclass) with a message that says what is wrong and what to do; the
``tinylarge`` command prints it as one line on stderr and exits with code 2 (``--debug`` or
``TINYLARGE_DEBUG=1`` shows the traceback instead). :func:`user_message` also recognises the errors the
platform's parts raise for outside mistakes: an unknown domain, a firmware build that cannot start, a
broker that cannot be reached.
"""

from __future__ import annotations


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
        return f"{exc}: start the broker (or the store) or fix --mqtt / --store"
    return None
