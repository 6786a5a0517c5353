"""Transitional alias of :mod:`genvault.logs` (structlog set-up), to be deleted.

The module was renamed so that no genvault module shares a standard library name.
``store/``, ``doctor/``, ``notify.py`` and ``jobs/archive.py`` are being reworked on
other branches and still import this name; once those land, their import lines move
to ``genvault.logs`` and this file goes. Nothing new should import it.
"""

from __future__ import annotations

from genvault.logs import configure, get_logger, register_secret, scrub

__all__ = ["configure", "get_logger", "register_secret", "scrub"]
