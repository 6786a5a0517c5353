"""The process exit codes of every ``genvault`` command: the CLI's contract with its callers.

A CronJob (``podFailurePolicy``), a systemd unit or a wrapper script acts on these
numbers, so they live in one enum beside no command in particular: the pipeline
earns 0, 3 and 4 (:attr:`RunReport.exit_code <genvault.jobs.pipeline.RunReport.exit_code>`),
the CLI adds the others. A module of its own, without imports, so the commands that
only need a number do not load the pipeline.
"""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    OK = 0
    CONFIG = 2
    RETRYING = 3
    LOST = 4
    BUSY = 5
    """Another genvault process already runs on this SQLite database (nothing was done)."""
    VERIFY_FAILED = 6
    """``genvault verify``: an archived object is missing, unreadable or does not match."""
    DOCTOR_FAILED = 7
    """``genvault doctor``: a check of an account failed (the report says what to change)."""


__all__ = ["ExitCode"]
