"""The frame format: round trips under any TCP segmentation, limits, and malformed input."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from anylog_tw.base.reply import Reply
from anylog_tw.net import wire
from anylog_tw.net.payload import reply_fields, reply_from_frame

text = st.text(max_size=40)
headers = st.fixed_dictionaries(
    {"kind": st.sampled_from(["hello", "cmd", "reply", "event", "error"]), "id": st.integers(0, 2**53)},
    optional={"cmd": text, "name": text, "ok": st.booleans(), "re": st.integers(0, 2**31),
              "args": st.dictionaries(text, st.integers() | text, max_size=3)})
frames = st.lists(st.tuples(headers, st.binary(max_size=300)), max_size=12)


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces, last = [], 0
    for p in points + [len(data)]:
        pieces.append(data[last:p])
        last = p
    return pieces


def decode_all(pieces, **kwargs):
    dec = wire.Decoder(**kwargs)
    events = []
    for piece in pieces:
        events.extend(dec.feed(piece))
    return dec, events


@settings(max_examples=300)
@given(frames, st.lists(st.integers(0, 10**6), max_size=40))
def test_round_trip_under_any_segmentation(items, cuts):
    stream = b"".join(wire.encode(h, b) for h, b in items)
    dec, events = decode_all(split(stream, cuts))
    assert dec.idle
    assert [(e[1]["kind"], e[1]["id"], e[2]) for e in events] == [(h["kind"], h["id"], b) for h, b in items]
    for (h, _), e in zip(items, events):
        assert {k: v for k, v in e[1].items() if k not in ("v", "size")} == h


@settings(max_examples=200)
@given(st.binary(max_size=5000), st.lists(st.integers(0, 10**6), max_size=20), text)
def test_streamed_file_body_comes_out_in_order(body, cuts, name):
    head = {"kind": "file", "id": 7, "name": name, "md5": "x", "dest": "watch"}
    stream = wire.encode(head, body) + wire.encode({"kind": "cmd", "id": 8, "cmd": "after"})
    _, events = decode_all(split(stream, cuts))
    assert events[0][0] == wire.START and events[0][1]["name"] == name
    chunks = [e[1] for e in events if e[0] == wire.CHUNK]
    assert b"".join(chunks) == body
    end = [i for i, e in enumerate(events) if e[0] == wire.END]
    assert len(end) == 1 and events[end[0] + 1][1]["cmd"] == "after"


def test_header_is_one_line_even_with_newlines_in_values():
    data = wire.encode({"kind": "cmd", "id": 1, "cmd": "a\nb"})
    assert data.count(b"\n") == 1
    assert wire.Decoder().feed(data)[0][1]["cmd"] == "a\nb"


def test_header_line_over_the_limit_is_refused_without_buffering_it_all():
    dec = wire.Decoder(max_header=1024)
    dec.feed(b"{" + b" " * 1000)
    with pytest.raises(wire.WireError, match="longer than 1024"):
        dec.feed(b" " * 100)
    with pytest.raises(wire.WireError):  # dead after an error
        dec.feed(b"\n")


def test_body_over_the_limit_is_refused_at_the_header():
    with pytest.raises(wire.WireError, match="over the 100 byte limit"):
        wire.Decoder(max_body=100).feed(b'{"v":1,"id":1,"kind":"cmd","size":101}\n')
    # files have their own, larger limit
    assert wire.Decoder(max_body=100).feed(b'{"v":1,"id":1,"kind":"file","size":101}\n')[0][0] == wire.START


@pytest.mark.parametrize("line, reason", [
    (b"not json", "not valid JSON"),
    (b"[1, 2]", "JSON object"),
    (b'{"id":1,"kind":"cmd"}', "'v'"),
    (b'{"v":99,"id":1,"kind":"cmd"}', "version 99"),
    (b'{"v":1,"id":1,"kind":"shout"}', "unknown frame kind"),
    (b'{"v":1,"id":-1,"kind":"cmd"}', "'id'"),
    (b'{"v":1,"id":true,"kind":"cmd"}', "'id'"),
    (b'{"v":1,"id":1,"kind":"cmd","size":"3"}', "size"),
    (b'\xff\xfe{}', "not valid JSON"),
])
def test_malformed_headers(line, reason):
    with pytest.raises(wire.WireError, match=reason):
        wire.Decoder().feed(line + b"\n")


def test_short_body_is_reported_as_pending():
    dec = wire.Decoder()
    assert dec.feed(b'{"v":1,"id":1,"kind":"cmd","size":10}\nabc') == []
    assert "7 bytes short" in dec.pending()
    dec2 = wire.Decoder()
    dec2.feed(b'{"v":1,"id"')
    assert "cut after" in dec2.pending()


@given(st.binary(max_size=2000))
def test_random_bytes_never_crash_the_decoder(data):
    dec = wire.Decoder(max_header=512, max_body=1024)
    try:
        for i in range(0, len(data), 7):
            for event in dec.feed(data[i:i + 7]):
                assert event[0] in (wire.FRAME, wire.START, wire.CHUNK, wire.END)
    except wire.WireError as e:
        assert e.reason


def test_encode_refuses_a_header_over_the_limit():
    with pytest.raises(wire.WireError):
        wire.encode({"kind": "cmd", "id": 1, "cmd": "x" * wire.MAX_HEADER})


# --- replies on the wire -----------------------------------------------------------------------

json_values = st.recursive(st.none() | st.booleans() | st.integers(-10**9, 10**9) | text,
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
                           max_leaves=10)
replies = st.one_of(
    st.builds(Reply.of_text, text),
    st.builds(Reply.of_json, json_values.filter(lambda v: v is not None)),  # Reply cannot hold JSON null
    st.builds(lambda cols, rows, title: Reply.of_table(cols, [[r] * len(cols) for r in rows], title),
              st.lists(text, min_size=1, max_size=4), st.lists(text, max_size=4), st.none() | text),
    st.builds(Reply.of_error, text, st.sampled_from(["peer", "bad_option"]), st.sampled_from([400, 404, 502])),
)


@given(replies, st.sampled_from(["text", "json"]))
def test_reply_round_trip(reply, fmt):
    reply.fmt = fmt if reply.ok else reply.fmt
    fields, body = reply_fields(reply)
    frame = wire.encode({"kind": "reply", "id": 0, "re": 5, **fields}, body)
    [(_, header, got_body)] = wire.Decoder().feed(frame)
    back = reply_from_frame(header, got_body)
    assert back.ok == reply.ok
    assert back.render() == reply.render()
    assert back.render("json") == reply.render("json")
    assert (back.error_code, back.status) == ((reply.error_code, reply.status) if not reply.ok else (None, 200))


def test_reply_body_that_does_not_match_its_format():
    with pytest.raises(wire.WireError):
        reply_from_frame({"ok": True, "format": "json"}, b"{nope")
    with pytest.raises(wire.WireError):
        reply_from_frame({"ok": True, "format": "table"}, json.dumps({"columns": 1}).encode())
    with pytest.raises(wire.WireError):
        reply_from_frame({"ok": True, "format": "pdf"}, b"")


@given(st.integers(0, 2**53), text)
def test_fast_cmd_encoding_matches_the_general_one(ident, command):
    fast = wire.encode_cmd(ident, command)
    [(_, header, body)] = wire.Decoder().feed(fast)
    assert header == {"v": wire.VERSION, "kind": "cmd", "id": ident, "cmd": command} and body == b""


@given(st.integers(0, 2**53), st.binary(max_size=100))
def test_fast_text_reply_encoding_decodes_as_a_reply(re, body):
    [(_, header, got)] = wire.Decoder().feed(wire.encode_text_reply(re, body))
    assert (header["kind"], header["re"], header["ok"], header["format"], got) == ("reply", re, True, "text", body)
