"""Moved to :mod:`medfm_hf.reporting` (all tables and figures live there); kept importable."""

from medfm_hf.reporting.runs import print_summary

__all__ = ["print_summary"]
