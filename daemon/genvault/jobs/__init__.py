"""The three jobs (sync, poll, archive) and the pass that runs them in order.

Each job is a plain function of a :class:`~genvault.runtime.Runtime` that does
one bounded pass and returns counts; the scheduler and ``run --once`` call them.
"""
