"""Compute: run tasks on sites through the :class:`~.protocols.Executor` protocol."""
