"""The live fleet dashboard (``tinylarge dashboard``): a read-only MQTT bridge, an ASGI app and its page.

See :mod:`shared.dashboard.server` (command line, security), :mod:`shared.dashboard.app` (routes),
:mod:`shared.dashboard.bridge` (what it subscribes to) and :mod:`shared.dashboard.state` (what it shows).
"""
