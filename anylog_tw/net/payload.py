"""A command's Reply on the wire and back: pure mapping between `Reply` and a reply frame.

The header says whether the command succeeded (`ok`), its error code and HTTP-like status, the
kind of payload (`format`: text, json or table) and the rendering the user asked for (`fmt`);
the body carries the payload (UTF-8 text, or JSON).  The receiver rebuilds an equal Reply, so a
remote `get processes` renders as a table, or as JSON with `format = json`, exactly as it would
locally.
"""

from __future__ import annotations

import json
from typing import Any

from anylog_tw.base.reply import JSON_FORMAT, TEXT, Reply
from anylog_tw.net.wire import WireError

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=str).encode


def reply_fields(reply: Reply) -> tuple[dict, bytes]:
    """(header fields, body) for a reply frame (the caller adds `kind`, `id` and `re`)."""
    header: dict[str, Any] = {"ok": bool(reply.ok)}
    if reply.fmt != TEXT:
        header["fmt"] = reply.fmt
    if not reply.ok:
        header["format"] = "text"
        header["code"] = reply.error_code or "error"
        header["status"] = reply.status
        return header, (reply.text or "").encode("utf-8")
    if reply.is_table:
        header["format"] = "table"
        payload: dict[str, Any] = {"columns": reply.columns, "rows": reply.rows}
        if reply.title:
            payload["title"] = reply.title
        if reply.data is not None:
            payload["data"] = reply.data
        return header, _dumps(payload).encode("utf-8")
    if reply.data is not None:
        header["format"] = "json"
        text = reply.json_text if reply.json_text is not None else _dumps(reply.data)  # rendered in a thread
        return header, text.encode("utf-8")
    header["format"] = "text"
    return header, (reply.text or "").encode("utf-8")


def reply_from_frame(header: dict, body: bytes) -> Reply:
    """The Reply a reply frame carries; a body that does not match its format is a WireError."""
    fmt = header.get("fmt") if header.get("fmt") in (TEXT, JSON_FORMAT) else TEXT
    kind = header.get("format", "text")
    try:
        if not header.get("ok", False):
            status = header.get("status", 400)
            return Reply(ok=False, text=body.decode("utf-8", "replace"), error_code=str(header.get("code", "error")),
                         status=status if isinstance(status, int) else 400, fmt=fmt)
        if kind == "text":
            return Reply(text=body.decode("utf-8"), fmt=fmt)
        if kind == "json":
            return Reply(data=json.loads(body), fmt=fmt)
        if kind == "table":
            payload = json.loads(body)
            if not isinstance(payload, dict) or not isinstance(payload.get("columns"), list) \
                    or not isinstance(payload.get("rows"), list):
                raise WireError("a table reply needs 'columns' and 'rows' lists")
            return Reply(columns=payload["columns"], rows=payload["rows"], title=payload.get("title"),
                         data=payload.get("data"), fmt=fmt)
    except (UnicodeDecodeError, ValueError) as e:
        raise WireError(f"a {kind} reply body does not decode: {e}") from None
    raise WireError(f"unknown reply format {kind!r} (text, json or table)")
