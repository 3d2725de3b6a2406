"""The REST site's root resource: which part of the node answers a path.

`/` (AnyLog's command route, the hot one) goes straight to `RestApi.root`, skipping Klein's
routing and request adapters, which cost about half of a bare twisted.web request; a browser
asking for `/` and every `/web/...` path get the node's page; Grafana's POSTs go to the data
source; everything else goes through the Klein app.  The Host check comes first, for all of them.
"""

from __future__ import annotations

import time

from twisted.python.failure import Failure
from twisted.web import resource, server

from anylog_tw.base.errors import AnyLogError


class Root(resource.Resource):
    """Answers `/` (with any query) itself; hands every other path to the Klein resource."""

    isLeaf = True

    def __init__(self, api, klein_resource, web, grafana, wants_page, grafana_paths):
        resource.Resource.__init__(self)
        self.api = api
        self.klein = klein_resource
        self.web = web
        self.grafana = grafana
        self.wants_page = wants_page
        self.grafana_paths = grafana_paths

    def render(self, request):
        try:
            self.api.hosts.check(request.getHeader(b"host"))
        except AnyLogError as e:  # a rebound DNS name, or a name the node does not answer to
            return self.api._fail(request, "other", time.perf_counter(), e)
        path = request.path
        if path != b"/":
            if path.startswith(b"/web/"):
                return self.web.render(request)
            if request.method == b"POST" and path in self.grafana_paths:
                return self.grafana.render(request)
            return self.klein.render(request)
        if request.method in (b"GET", b"HEAD") and self.wants_page(request):
            return self.web.render(request)
        result = self.api.root(request)
        if isinstance(result, bytes):
            return result
        result.addCallbacks(self._write, self._bug, callbackArgs=(request,), errbackArgs=(request,))
        return server.NOT_DONE_YET

    @staticmethod
    def _write(body: bytes, request) -> None:
        if request.channel is None:  # the client went away while the command ran
            return
        request.write(body)
        request.finish()

    def _bug(self, failure: Failure, request) -> None:
        self._write(self.api._fail(request, "/", time.perf_counter(), failure.value, failure), request)
