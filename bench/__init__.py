"""Benchmarks: print tables, write JSON under out/bench/."""
