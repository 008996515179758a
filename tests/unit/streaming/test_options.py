"""The option checks every source shares."""

from __future__ import annotations

import pytest

from schemas.errors import OptionError, PinpipeError
from streaming.options import flag, positive_int, required, set_options


def test_positive_int():
    assert positive_int({"n": "5"}, "n") == 5
    assert positive_int({}, "n", default=3) == 3 and positive_int({"n": ""}, "n") is None
    for bad in ("0", "-1", "1.5", "x"):
        with pytest.raises(OptionError, match="option n must be a positive integer"):
            positive_int({"n": bad}, "n")
    with pytest.raises(OptionError, match="at most 10 \\(why\\)"):
        positive_int({"n": "11"}, "n", maximum=10, why_maximum=" (why)")


def test_flag_and_required():
    assert flag({"f": "TRUE"}, "f", False) is True and flag({}, "f", True) is True
    with pytest.raises(OptionError, match="option f must be true or false"):
        flag({"f": "yes"}, "f", False)
    with pytest.raises(OptionError, match="option path is required \\(a folder\\)"):
        required({}, "path", "a folder")


def test_set_options_drops_unset_values_and_stringifies():
    assert set_options({"a": 1, "b": None, "c": "x"}) == {"a": "1", "c": "x"}


def test_every_pipeline_error_shares_one_base():
    assert issubclass(OptionError, PinpipeError) and issubclass(OptionError, ValueError)
