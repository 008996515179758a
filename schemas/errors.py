"""The one base of every error the pipeline raises on purpose.

``except PinpipeError`` catches what the pipeline itself reports (a bad option, lost data, a missing
stream, a bad setting); anything else is a bug or a library's own failure. Subclasses also derive
from the built-in error they refine (``ValueError`` for bad input, ``RuntimeError`` for a failure
at run time), so callers that catch those keep working.
"""

from __future__ import annotations


class PinpipeError(Exception):
    """Base of the pipeline's own errors."""


class OptionError(PinpipeError, ValueError):
    """A data source option (or a value derived from one) is missing or invalid; the message names it."""


class DataLossError(PinpipeError, RuntimeError):
    """Records a query still needed are gone (retention, a deleted topic or stream). See failOnDataLoss."""


class StreamNotFoundError(PinpipeError, RuntimeError):
    """A topic or stream the query reads does not exist."""
