"""Errors of the discv5 implementation; every decode failure is a :class:`Discv5DecodeError`."""

from v2.errors import V2Error

__all__ = ["Discv5DecodeError", "Discv5Error", "WrongProtocolIdError"]


class Discv5Error(V2Error):
    """Root of the discv5 errors."""


class Discv5DecodeError(Discv5Error):
    """A packet, header, authdata or message that cannot be decoded, authenticated or verified."""


class WrongProtocolIdError(Discv5DecodeError):
    """The static header names another network (e.g. Ethereum's ``discv5`` on a ``d5waku`` node)."""
