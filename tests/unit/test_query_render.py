"""Pages rendered by an operator (query/cursor.py `render`) against the general path: the rows
converted (`convert`), decoded and written by the query node (`output.dumps_rows`) give the same
text, whatever the database's values."""

from __future__ import annotations

import datetime
import decimal
import json

from hypothesis import given
from hypothesis import strategies as st

from anylog_tw.query import output, stream
from anylog_tw.query.cursor import convert, render

values = st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1), st.floats(), st.text(max_size=5),
                   st.binary(max_size=4), st.datetimes(), st.dates(), st.times(), st.uuids(),
                   st.decimals(allow_nan=False, places=2, max_value=10**6, min_value=-(10**6)),
                   st.timedeltas(), st.sampled_from(["null", "a null", float("inf"), decimal.Decimal("NaN")]))


@given(st.integers(1, 4).flatmap(lambda w: st.lists(st.lists(values, min_size=w, max_size=w), max_size=6)))
def test_rendered_page_is_the_general_paths_text(rows):
    titles = [f"c{i}" for i in range(len(rows[0]))] if rows else ["c0"]
    page = render(titles, rows)
    # the general path: converted on the operator, through the peer frame's JSON, written by the query node
    travelled = json.loads(json.dumps([convert(r) for r in rows], default=str))
    assert page.count == len(rows)
    assert page.text == output.dumps_rows(titles, travelled).encode("utf-8")


def test_rendered_rows_cut_at_the_limit():
    page = render(["a", "b"], [(1, "x"), (2, None), (3, datetime.datetime(2026, 1, 2, 3, 4, 5))])
    cut = stream.first_rows(page, 2)
    assert cut.count == 2 and json.loads(b"[" + cut.text + b"]") == [{"a": 1, "b": "x"}, {"a": 2, "b": None}]
    assert stream.first_rows(page, 0).count == 0 and stream.first_rows([1, 2, 3], 2) == [1, 2]
