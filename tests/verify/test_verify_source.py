"""User source is read the way Python's import reads it: BOM, coding cookie, newlines."""

import textwrap

from loopvec.verify import Candidate, Impl, VerifySettings, verify_candidates
from loopvec.verify.loading import read_source
from loopvec.verify.source import find_definition

# The hint on the def line is the only way to learn that x is 3-D.
MODULE = textwrap.dedent('''\
    import torch

    # a page break: \x0c, and a line separator in a string:
    NOTE = "a\u2028b"


    def total(x):  # loopvec: shapes x=[a,b,c]
        if len(x.shape) != 3:
            raise ValueError("expected a 3-D tensor")
        out = torch.zeros(len(x), dtype=x.dtype)
        for i in range(len(x)):
            out[i] = x[i].sum()
        return out
''')


def test_a_form_feed_or_line_separator_does_not_shift_the_hint_line():
    d = find_definition(MODULE, "total")
    assert d.hint_comment() == {"x": "[a,b,c]"}


def test_a_bom_is_dropped_and_a_coding_cookie_honoured(tmp_path):
    bom = tmp_path / "bom.py"
    bom.write_bytes(b"\xef\xbb\xbf" + MODULE.encode("utf-8"))
    assert read_source(bom) == MODULE
    latin = tmp_path / "latin.py"
    latin.write_bytes(b"# -*- coding: latin-1 -*-\r\nNAME = '\xe9'\r\n")
    assert read_source(latin) == "# -*- coding: latin-1 -*-\nNAME = '\u00e9'\n"


def test_a_bom_file_with_a_form_feed_verifies_with_its_hint(tmp_path):
    path = tmp_path / "bom_total.py"
    path.write_bytes(b"\xef\xbb\xbf" + MODULE.replace("\n", "\r\n").encode("utf-8"))
    cand = Candidate(
        Impl(str(path), "total"),
        Impl(str(path), "total", source="def total(x):\n    return x.sum((1, 2))\n", prelude="import torch"),
    )
    (v,) = verify_candidates([cand], VerifySettings(max_examples=20))
    assert v.status == "verified", v.message
    assert v.discarded == 0  # every input was 3-D: the hint was read
