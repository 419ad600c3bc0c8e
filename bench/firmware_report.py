"""Firmware footprint report (``make firmware-report``): a thin wrapper over :mod:`shared.tiny.report`,
which ``tinylarge firmware report`` runs from any directory."""

from __future__ import annotations

from shared.tiny.report import PARITY_INPUTS, collect_models, main, measure, parity, table

__all__ = ["PARITY_INPUTS", "collect_models", "main", "measure", "parity", "table"]

if __name__ == "__main__":
    raise SystemExit(main())
