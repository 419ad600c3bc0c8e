"""Scaffolding: ``tinylarge domain new NAME`` writes a domain package that works with every verb as it is
(:mod:`shared.scaffold.generator`; the template is package data under ``template/``)."""

from shared.scaffold.generator import ScaffoldError, check_name, domain_main, generate

__all__ = ["ScaffoldError", "check_name", "domain_main", "generate"]
