"""Errors raised by the ``icul`` package.

    IculError
     ├── InvalidInputError (ValueError)   bad parameters, pools, templates or messages
     └── UnknownExampleError (KeyError)   deleting an id that is not in the pool
"""

from __future__ import annotations


class IculError(Exception):
    """Base class of every error raised by ``icul``."""


class InvalidInputError(IculError, ValueError):
    """A parameter, pool, template or message list that cannot be used."""


class UnknownExampleError(IculError, KeyError):
    """An example id that is not (or no longer) in the pool."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""
