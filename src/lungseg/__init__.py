"""lungseg: lung segmentation for chest X-rays."""

import logging

__version__ = "0.1.0"

from .errors import InputError, LungsegError, MissingExtraError, ModelError  # noqa: E402
from .models import create_model  # noqa: E402

logging.getLogger(__name__).addHandler(logging.NullHandler())

__all__ = ["__version__", "InputError", "LungsegError", "MissingExtraError", "ModelError", "create_model"]
