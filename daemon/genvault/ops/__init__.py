"""What the operator commands do, apart from parsing their options.

:mod:`genvault.cli` is the click layer (one module per command: options, the
process lock, exit codes); the work of the one-off commands an operator runs by
hand lives here, one module each, so it can be called and tested without click:

* :mod:`.backfill`  ``genvault backfill``: a full walk of an account's history, then its archive;
* :mod:`.dryrun`  ``genvault run --once --dry-run``: what a pass would do, writing nothing;
* :mod:`.verify`  ``genvault verify``: archived objects read back and checked;
* :mod:`.export`  ``genvault export``: every generation's metadata and file locations;
* :mod:`.demo`  ``genvault demo``: the real pipeline against the built-in simulators;
* :mod:`.readonly`  opening the database for the commands that must not change it.

The daemon's own jobs are :mod:`genvault.jobs`; ``genvault doctor`` is
:mod:`genvault.doctor`. Nothing is imported here: ``genvault --help`` loads none of it.
"""
