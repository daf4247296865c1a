"""Laboratories: instruments and robotic cells behind the :class:`~.protocols.Station` protocol."""
