"""Typed exceptions raised by lungseg for bad input and bad models."""


class LungsegError(Exception):
    """Base class of every error lungseg raises on purpose."""


class InputError(LungsegError, ValueError):
    """An image, mask or data folder that cannot be used; the message names it and the problem."""


class ModelError(LungsegError, ValueError):
    """A weights file or exported model that cannot be loaded or does not match its checksum."""


class MissingExtraError(LungsegError, ImportError):
    """An optional dependency is missing; the message names the extra to install."""
