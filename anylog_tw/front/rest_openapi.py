"""The OpenAPI 3 description of the REST server (`GET /openapi.json`).

Written by hand from the same constants the routes use, so it says what the server really does;
a schemathesis run in the tests holds the server to it (no 500, no status, type or body that
the document does not announce).  It covers every route, every header of the AnyLog contract,
the PUT data headers, and the error shape.
"""

from __future__ import annotations

from anylog_tw import __version__

_ERROR_STATUSES = {
    "400": "Bad request: a malformed header or body, a wrong verb (says which to use), a bad command or option",
    "401": "Credentials missing or wrong (the server was started with a user and password, a token or a users file)",
    "403": "Refused: the caller's role lacks the grant the command needs, the server is read only and the command "
           "(or PUT) would change the node, or a browser origin not listed in 'cors'",
    "404": "Unknown command (with the nearest commands as hints) or something the command names does not exist",
    "405": "This verb is not used on this route",
    "408": "The command did not answer within the timeout (the 'timeout' header or the server's)",
    "409": "Conflict: the process is already running or not running, or the same data file was already sent",
    "413": "The body is over the server's limit ('max body', 64 MiB by default)",
    "415": "A POST with commands but neither the 'command' header nor a JSON body (what any web page can send)",
    "421": "The Host header does not name this node (a re-pointed DNS name): list extra names in 'hosts'",
    "500": "A bug in the node (the traceback is in the node's log, never in the reply)",
    "502": "A peer node named by 'destination' could not be reached or refused",
    "503": "The node could not write the data (disk full, permissions); nothing was half-written",
}


def _errors(*codes: str) -> dict:
    return {code: {"description": _ERROR_STATUSES[code],
                   "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
            for code in codes}


def _header(name: str, description: str, example: str | None = None, required: bool = False) -> dict:
    param = {"name": name, "in": "header", "required": required, "description": description,
             "schema": {"type": "string"}}
    if example is not None:
        param["example"] = example
    return param


_COMMAND_HEADERS = [
    _header("command", "The AnyLog command to run (e.g. 'get status'). A GET runs only commands that change "
                       "nothing; without any command a GET answers 'get status'.", "get status"),
    _header("AnyLog-Agent", "The client, e.g. AnyLog/1.23 (wins over User-Agent, which browsers cannot set).",
            "AnyLog/1.23"),
    _header("destination", "Where to run the command: 'local' (default), 'network' (run client ()), or a "
                           "comma-separated list of peer TCP addresses ip:port (run client (list))."),
    _header("timeout", "Seconds to wait for the reply (0 waits forever); the server's timeout otherwise.", "20"),
    _header("subset", "true: accept the replies of the peers that answered (with destination).", "false"),
]
_QUERY_COMMAND = {"name": "command", "in": "query", "required": False, "schema": {"type": "string"},
                  "description": "The command in the URL form (/?command=get%20status); AnyLog's "
                                 "/?User-Agent=AnyLog/1.23?command=... form works too."}
_COMMAND_REPLY = {
    "description": "The command's output: JSON when the output is JSON (e.g. 'where format = json'), text otherwise",
    "content": {"text/plain": {"schema": {"type": "string"}}, "application/json": {"schema": {}}},
}
_COMMAND_ERRORS = ("400", "401", "403", "404", "408", "409", "413", "415", "421", "500", "502", "503")

_PUT_HEADERS = [
    _header("dbms", "The logical database of the rows.", "lsl_demo", required=True),
    _header("table", "The table of the rows.", "ping_sensor", required=True),
    _header("source", "The device or source id (default 0).", "0"),
    _header("instructions", "The mapping policy id (default 0: the default mapping).", "0"),
    _header("type", "The data type: json (the only one taken).", "json"),
    _header("mode", "file (default): one watch-dir file per PUT; streaming: into the table's streaming buffer.",
            "file"),
]


def openapi_document(node, config, credentials=None) -> dict:
    """The document for one server (security schemes only when the server asks for credentials)."""
    doc: dict = {
        "openapi": "3.0.3",
        "info": {"title": f"anylog-tw node {node.name}", "version": __version__,
                 "description": "AnyLog's REST contract (commands in headers, data by PUT) plus health, metrics "
                                "and this document. Every error is {\"error\": {\"code\", \"message\"}}."},
        "paths": {
            "/": {
                "get": {"summary": "Run a command that changes nothing", "operationId": "runGet",
                        "parameters": _COMMAND_HEADERS + [_QUERY_COMMAND],
                        "responses": {"200": _COMMAND_REPLY, **_errors(*_COMMAND_ERRORS)}},
                "post": {"summary": "Run any command", "operationId": "runPost",
                         "description": "The command comes from the 'command' header, the URL, or a JSON body "
                                        "({\"command\": ...} or {\"dbms\": ..., \"sql\": ...}). A text body "
                                        "holds commands run first, one a line ('<...>' spans lines).",
                         "parameters": _COMMAND_HEADERS + [_QUERY_COMMAND],
                         "requestBody": {"required": False, "content": {
                             "text/plain": {"schema": {"type": "string"}},
                             "application/json": {"schema": {"$ref": "#/components/schemas/CommandBody"}}}},
                         "responses": {"200": _COMMAND_REPLY, **_errors(*_COMMAND_ERRORS)}},
                "put": {"summary": "Send rows of JSON data", "operationId": "putData",
                        "parameters": _PUT_HEADERS,
                        "requestBody": {"required": True, "content": {
                            "application/json": {"schema": {"$ref": "#/components/schemas/Rows"}},
                            "text/plain": {"schema": {"type": "string"},
                                           "example": "{\"value\": 1}\n{\"value\": 2}\n"}}},
                        "responses": {"200": {"description": "Taken; in file mode the hash names the file",
                                              "content": {"application/json": {
                                                  "schema": {"$ref": "#/components/schemas/PutReply"}}}},
                                      **_errors("400", "401", "403", "409", "413", "500", "503")}},
                "options": {"summary": "CORS preflight", "operationId": "preflight",
                            "responses": {"204": {"description": "The methods and headers the server takes"}}},
                "delete": {"summary": "Not used", "operationId": "deleteRoot", "responses": _errors("405")},
            },
            "/health": {"get": {"summary": "Liveness, without credentials", "operationId": "health",
                                "responses": {"200": {"description": "The node runs", "content": {
                                    "application/json": {"schema": {"$ref": "#/components/schemas/Health"}}}}}}},
            "/api/status": {"get": {"summary": "get status as JSON (as EdgeLake answers here)",
                                    "operationId": "apiStatus",
                                    "responses": {"200": {"description": "The node's status", "content": {
                                        "application/json": {"schema": {"type": "object"}}}},
                                        **_errors("401", "500")}}},
            "/metrics": {"get": {"summary": "Prometheus metrics", "operationId": "metrics",
                                 "responses": {"200": {"description": "Prometheus text format", "content": {
                                     "text/plain": {"schema": {"type": "string"}}}}, **_errors("401", "500")}}},
            "/openapi.json": {"get": {"summary": "This document", "operationId": "openapi",
                                      "responses": {"200": {"description": "OpenAPI 3", "content": {
                                          "application/json": {"schema": {"type": "object"}}}},
                                          **_errors("401", "500")}}},
        },
        "components": {"schemas": {
            "Error": {"type": "object", "required": ["error"], "properties": {"error": {
                "type": "object", "required": ["code", "message"],
                "properties": {"code": {"type": "string"}, "message": {"type": "string"}}}}},
            "CommandBody": {"type": "object", "properties": {
                "command": {"type": "string"}, "destination": {"type": "string"}, "dbms": {"type": "string"},
                "sql": {"type": "string"}}},
            "Rows": {"oneOf": [{"type": "array", "items": {"type": "object"}, "minItems": 1}, {"type": "object"}]},
            "PutReply": {"type": "object", "required": ["AnyLog.status", "AnyLog.hash"], "properties": {
                "AnyLog.status": {"type": "string", "enum": ["Success"]}, "AnyLog.hash": {"type": "string"}}},
            "Health": {"type": "object", "required": ["status", "node"], "properties": {
                "status": {"type": "string"}, "node": {"type": "string"}, "version": {"type": "string"},
                "uptime": {"type": "number"}}},
        }},
    }
    if credentials is not None and credentials.required:
        schemes = {}
        if credentials.password:
            schemes["basicAuth"] = {"type": "http", "scheme": "basic"}
        if credentials.token:
            schemes["bearerAuth"] = {"type": "http", "scheme": "bearer"}
        doc["components"]["securitySchemes"] = schemes
        doc["security"] = [{name: []} for name in schemes]
        doc["paths"]["/health"]["get"]["security"] = []
        doc["paths"]["/"]["options"]["security"] = []
    return doc
