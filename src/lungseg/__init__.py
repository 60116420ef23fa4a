"""lungseg: lung segmentation for chest X-rays."""

import logging
from typing import TYPE_CHECKING

__version__ = "0.1.0"

from .errors import InputError, LungsegError, MissingExtraError, ModelError  # noqa: E402
from .models import create_model  # noqa: E402
# A package that can be called: lungseg.export(...) runs lungseg.export.export(...).
from . import export  # noqa: E402

logging.getLogger(__name__).addHandler(logging.NullHandler())

# The inference API is imported on first use, so that `import lungseg` stays light.
_LAZY = {"segment": "api", "analyze": "api", "Result": "api", "Segmenter": "api", "measure": "api",
         "load": "runtime"}

__all__ = ["__version__", "InputError", "LungsegError", "MissingExtraError", "ModelError", "create_model",
           "segment", "analyze", "Result", "Segmenter", "measure", "load", "export"]


def __getattr__(name):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))


if TYPE_CHECKING:  # static analysis and IDEs see the lazy names
    from .api import Result, Segmenter, analyze, measure, segment  # noqa: F401
    from .runtime import load  # noqa: F401
