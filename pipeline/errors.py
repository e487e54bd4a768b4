"""The one exception type the CLI turns into a clear message instead of a traceback."""

from __future__ import annotations


class LeadcalError(Exception):
    """A problem the user can fix: bad input, bad params, too little data.

    The message must say which file (and where possible which column and rows)
    and what was expected, because it is all the user sees.
    """
