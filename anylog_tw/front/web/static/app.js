/* anylog-tw: the node's page keeps itself current and runs commands and queries.
 *
 * The server renders the page with its data; this script polls three JSON endpoints at three
 * cadences (live state every 2 s, the hour of ingest buckets every 10 s, the metadata picture every
 * 30 s), pauses while the tab is hidden, and posts commands and queries with the page's CSRF token.
 * Charts are drawn with uPlot (MIT), shipped with the package. No build step, no outside network.
 */
(function () {
  "use strict";

  var CSRF = document.querySelector('meta[name="csrf-token"]').getAttribute("content");
  var LIVE_MS = 2000, RATES_MS = 10000, NETWORK_MS = 30000;
  var selectedTable = null;   // "dbms.table" charted on top of the tables, or null for all
  var lastRates = null;
  var rateChart = null, queryChart = null;

  // -- small helpers ----------------------------------------------------------------------------

  function el(tag, attrs) {
    var node = document.createElement(tag);
    if (attrs) {
      Object.keys(attrs).forEach(function (k) {
        if (k === "text") { node.textContent = attrs[k]; }
        else if (k === "class") { node.className = attrs[k]; }
        else { node.setAttribute(k, attrs[k]); }
      });
    }
    for (var i = 2; i < arguments.length; i++) {
      var child = arguments[i];
      if (child === null || child === undefined) { continue; }
      node.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
    }
    return node;
  }

  function fmt(n) {
    return typeof n === "number" ? n.toLocaleString("en-US", {maximumFractionDigits: 3}) : String(n);
  }

  function setLive(ok, text) {
    var state = document.getElementById("live-state");
    state.textContent = text;
    state.className = ok ? "muted" : "muted stale";
  }

  function request(url, options) {
    return fetch(url, options).then(function (response) {
      if (response.status === 401) {           // the session ended: the page shows the login
        window.location.reload();
        throw new Error("logged out");
      }
      return response.json().then(function (data) {
        if (!response.ok && data && data.error) { throw new Error(data.error.message); }
        return data;
      });
    });
  }

  function getJSON(url) {
    return request(url, {credentials: "same-origin", headers: {"Accept": "application/json"}});
  }

  function postJSON(url, body) {
    return request(url, {
      method: "POST", credentials: "same-origin",
      headers: {"Content-Type": "application/json", "Accept": "application/json", "X-AnyLog-CSRF": CSRF},
      body: JSON.stringify(body)
    });
  }

  function every(ms, fn) {
    // Run fn now and then every ms while the page is visible; never two at once.
    var timer = null;
    function tick() {
      timer = null;
      if (document.hidden) { return; }
      Promise.resolve().then(fn).catch(function (e) { setLive(false, "not updating: " + e.message); })
        .then(function () { if (!document.hidden) { timer = setTimeout(tick, ms); } });
    }
    document.addEventListener("visibilitychange", function () {
      if (!document.hidden && timer === null) { tick(); }
    });
    timer = setTimeout(tick, ms);
  }

  // -- tables as tables, JSON as a tree -----------------------------------------------------------

  function tableOf(columns, rows) {
    var head = el("tr");
    columns.forEach(function (c) { head.appendChild(el("th", {text: c})); });
    var body = el("tbody");
    rows.forEach(function (row) {
      var tr = el("tr");
      row.forEach(function (v) {
        var text = v === null || v === undefined ? "" : (typeof v === "object" ? JSON.stringify(v) : String(v));
        tr.appendChild(el("td", {text: text, class: typeof v === "number" ? "num" : ""}));
      });
      body.appendChild(tr);
    });
    return el("table", {class: "result"}, el("thead", null, head), body);
  }

  function leaf(key, value) {
    var cls = typeof value === "string" ? "str" : (typeof value === "number" ? "num" : "lit");
    var shown = typeof value === "string" ? JSON.stringify(value) : String(value);
    return el("div", {class: "leaf"}, key === null ? null : el("span", {class: "key", text: key + ": "}),
              el("span", {class: cls, text: shown}));
  }

  function tree(value, key, depth) {
    if (value === null || typeof value !== "object") { return leaf(key, value); }
    var isArray = Array.isArray(value);
    var keys = isArray ? value.map(function (_, i) { return i; }) : Object.keys(value);
    var label = (key === null ? "" : key + ": ") + (isArray ? "[" + keys.length + "]" : "{" + keys.length + "}");
    var details = el("details", null, el("summary", {text: label}));
    if (depth < 2) { details.open = true; }
    keys.slice(0, 1000).forEach(function (k) { details.appendChild(tree(value[k], String(k), depth + 1)); });
    if (keys.length > 1000) { details.appendChild(el("div", {class: "leaf muted", text: "... " + (keys.length - 1000) + " more"})); }
    return details;
  }

  function showReply(target, payload) {
    target.textContent = "";
    if (!payload.ok) {
      target.appendChild(el("pre", {class: "error", text: "Error: " + payload.error.message}));
      return;
    }
    if (payload.kind === "table") {
      if (payload.title) { target.appendChild(el("pre", {text: payload.title})); }
      target.appendChild(tableOf(payload.columns, payload.rows));
      if (payload.truncated) { target.appendChild(el("div", {class: "meta", text: "(more rows than shown)"})); }
    } else if (payload.kind === "json") {
      var data = payload.data;
      if (data && Array.isArray(data.Query)) {   // an sql reply: its rows as a table, the rest as a tree
        var columns = [];
        data.Query.forEach(function (r) { Object.keys(r).forEach(function (k) { if (columns.indexOf(k) < 0) { columns.push(k); } }); });
        target.appendChild(tableOf(columns, data.Query.map(function (r) { return columns.map(function (c) { return r[c]; }); })));
      }
      target.appendChild(el("div", {class: "tree"}, tree(data, null, 0)));
    } else {
      target.appendChild(el("pre", {text: payload.text}));
    }
  }

  // -- live state -------------------------------------------------------------------------------

  function renderStatus(status) {
    if (!status || status.error) { return; }
    document.getElementById("node-status").textContent = status.status;
    var s = Math.floor(status.uptime || 0);
    var pad = function (n) { return (n < 10 ? "0" : "") + n; };
    document.getElementById("node-uptime").textContent = "up " + Math.floor(s / 86400) + "d " +
      pad(Math.floor(s % 86400 / 3600)) + ":" + pad(Math.floor(s % 3600 / 60)) + ":" + pad(s % 60);
  }

  function renderProcesses(processes) {
    var body = document.querySelector("#processes tbody");
    body.textContent = "";
    if (processes.error) { body.appendChild(el("tr", null, el("td", {colspan: "3", class: "error", text: processes.error}))); return; }
    Object.keys(processes).forEach(function (name) {
      var p = processes[name];
      body.appendChild(el("tr", {"data-process": name}, el("td", {text: name}),
        el("td", {text: p.Status, class: p.Status === "Running" ? "running" : "off"}), el("td", {text: p.Details || ""})));
    });
  }

  function renderPeers(peers) {
    var body = document.querySelector("#peers tbody");
    body.textContent = "";
    if (peers.error) { body.appendChild(el("tr", null, el("td", {colspan: "8", class: "error", text: peers.error}))); return; }
    if (!peers.length) { body.appendChild(el("tr", {class: "empty"}, el("td", {colspan: "8", class: "muted", text: "No peer connections yet."}))); }
    peers.forEach(function (p) {
      body.appendChild(el("tr", null, el("td", {text: p.Peer}), el("td", {text: p.Name}), el("td", {text: p.Direction}),
        el("td", {text: p.Status, class: p.Status === "active" ? "running" : "off"}),
        el("td", {class: "num", text: fmt(p["Requests Out"])}), el("td", {class: "num", text: fmt(p["Requests In"])}),
        el("td", {class: "num", text: fmt(p.Failures)}), el("td", {text: p["Last Error"] || ""})));
    });
  }

  function sparkSvg() {
    var svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
    svg.setAttribute("class", "spark"); svg.setAttribute("width", "120"); svg.setAttribute("height", "20");
    svg.setAttribute("viewBox", "0 0 120 20");
    return svg;
  }

  function tableRow(t) {
    var key = t.dbms + "." + t.table;
    var row = document.querySelector('#tables tr[data-table="' + CSS.escape(key) + '"]');
    if (!row) {
      var empty = document.querySelector("#tables tr.empty");
      if (empty) { empty.remove(); }
      row = el("tr", {"data-table": key}, el("td", {text: t.dbms}), el("td", {text: t.table}), el("td", {class: "num"}),
        el("td", {class: "num"}), el("td", {class: "num"}), el("td", {class: "num"}), el("td", null, sparkSvg()), el("td"));
      var rows = Array.prototype.slice.call(document.querySelectorAll("#tables tbody tr[data-table]"));
      var after = rows.find(function (r) { return r.getAttribute("data-table") > key; });
      document.querySelector("#tables tbody").insertBefore(row, after || null);
    }
    return row;
  }

  function renderTables(data) {
    if (!data || data.error) { return; }
    data.tables.forEach(function (t) {
      var cells = tableRow(t).children;
      cells[2].textContent = fmt(t.rows);
      cells[3].textContent = fmt(t.files);
      cells[4].textContent = fmt(t.errors);
      cells[4].className = t.errors ? "num error" : "num";
      cells[5].textContent = fmt(t.rate_minute);
      cells[7].textContent = t.last || "";
    });
  }

  function pollLive() {
    return getJSON("/web/live").then(function (data) {
      renderStatus(data.status);
      renderProcesses(data.processes);
      renderPeers(data.peers);
      renderTables(data.tables);
      setLive(true, "live · " + new Date().toLocaleTimeString());
    });
  }

  // -- ingest rates -------------------------------------------------------------------------------

  function drawSpark(svg, series) {
    var max = Math.max.apply(null, series.concat([1]));
    var step = 120 / (series.length - 1);
    var points = series.map(function (v, i) { return (i * step).toFixed(1) + "," + (19 - v / max * 18).toFixed(1); });
    svg.textContent = "";
    var base = document.createElementNS(svg.namespaceURI, "line");
    base.setAttribute("x1", "0"); base.setAttribute("x2", "120"); base.setAttribute("y1", "19.5"); base.setAttribute("y2", "19.5");
    var line = document.createElementNS(svg.namespaceURI, "polyline");
    line.setAttribute("points", points.join(" "));
    svg.appendChild(base); svg.appendChild(line);
  }

  function chartData(rates) {
    var n = rates.tables.length ? rates.tables[0].series.length : 360;
    var xs = [], ys = [];
    for (var i = 0; i < n; i++) { xs.push(rates.end - (n - 1 - i) * rates.bucket); ys.push(0); }
    rates.tables.forEach(function (t) {
      if (selectedTable && t.dbms + "." + t.table !== selectedTable) { return; }
      t.series.forEach(function (v, i) { ys[i] += v / rates.bucket; });
    });
    return [xs, ys];
  }

  var chartLibrary = null;

  function withCharts() {
    // uPlot is loaded after the first paint, when the first chart is drawn: 51 KB less to run first.
    if (!chartLibrary) {
      chartLibrary = new Promise(function (resolve, reject) {
        document.head.appendChild(el("link", {rel: "stylesheet", href: "/web/static/uPlot.min.css"}));
        var script = el("script", {src: "/web/static/uPlot.iife.min.js"});
        script.onload = function () { resolve(window.uPlot); };
        script.onerror = function () { chartLibrary = null; reject(new Error("cannot load the chart library")); };
        document.head.appendChild(script);
      });
    }
    return chartLibrary;
  }

  function lineChart(holder, label, data, previous, height) {
    if (previous) { previous.destroy(); }
    var width = Math.max(300, holder.clientWidth - 10);
    var series = [{}];
    for (var i = 1; i < data.length; i++) {
      series.push({label: Array.isArray(label) ? label[i - 1] : label, stroke: ["#1f6feb", "#1a7f37", "#cf222e", "#8250df", "#bf8700"][(i - 1) % 5], width: 1.5});
    }
    return new uPlot({width: width, height: height, series: series, scales: {x: {time: true}}}, data, holder);
  }

  function renderRates(rates) {
    if (!rates || rates.error) { return; }
    lastRates = rates;
    renderTables(rates);
    rates.tables.forEach(function (t) {
      var svg = tableRow(t).querySelector("svg.spark");
      if (svg) { drawSpark(svg, t.series); }
    });
    var holder = document.getElementById("rate-chart");
    document.getElementById("rate-chart-title").textContent =
      "Rows per second, last hour: " + (selectedTable || "all tables");
    return withCharts().then(function () {
      rateChart = lineChart(holder, selectedTable || "all tables", chartData(rates), rateChart, 160);
    });
  }

  function pollRates() { return getJSON("/web/rates").then(renderRates); }

  document.querySelector("#tables tbody").addEventListener("click", function (event) {
    var row = event.target.closest("tr[data-table]");
    if (!row) { return; }
    var key = row.getAttribute("data-table");
    selectedTable = selectedTable === key ? null : key;
    document.querySelectorAll("#tables tr.selected").forEach(function (r) { r.classList.remove("selected"); });
    if (selectedTable) { row.classList.add("selected"); }
    if (lastRates) { renderRates(lastRates); }
  });

  // -- the metadata network -------------------------------------------------------------------------

  function pollNetwork() {
    return getJSON("/web/network").then(function (data) {
      var holder = document.getElementById("network");
      var doc = new DOMParser().parseFromString(data.svg, "image/svg+xml");
      holder.textContent = "";
      if (data.error) { holder.appendChild(el("p", {class: "error", text: data.error})); }
      holder.appendChild(document.importNode(doc.documentElement, true));
    });
  }

  // -- the command box --------------------------------------------------------------------------

  document.getElementById("command-form").addEventListener("submit", function (event) {
    event.preventDefault();
    var input = document.getElementById("command-input");
    var output = document.getElementById("command-output");
    var button = document.getElementById("command-run");
    var text = input.value.trim();
    if (!text) { return; }
    button.disabled = true;
    output.textContent = "running...";
    postJSON("/web/command", {command: text}).then(function (payload) {
      showReply(output, payload);
      output.setAttribute("data-command", text);
    }).catch(function (e) {
      output.textContent = "";
      output.appendChild(el("pre", {class: "error", text: "Error: " + e.message}));
    }).then(function () { button.disabled = false; });
  });

  // -- the query box ----------------------------------------------------------------------------

  document.getElementById("query-form").addEventListener("submit", function (event) {
    event.preventDefault();
    var output = document.getElementById("query-output");
    var holder = document.getElementById("query-chart");
    var button = document.getElementById("query-run");
    button.disabled = true;
    output.textContent = "running...";
    postJSON("/web/query", {
      dbms: document.getElementById("query-dbms").value,
      sql: document.getElementById("query-sql").value,
      destination: document.getElementById("query-destination").value
    }).then(function (payload) {
      output.textContent = "";
      if (queryChart) { queryChart.destroy(); queryChart = null; }
      if (!payload.ok) { showReply(output, payload); return; }
      if (payload.chart) {
        withCharts().then(function () {
          if (queryChart) { queryChart.destroy(); }
          queryChart = lineChart(holder, payload.chart.columns, [payload.chart.x].concat(payload.chart.y), null, 220);
        });
      }
      var stats = payload.statistics ? " · " + JSON.stringify(payload.statistics) : "";
      output.appendChild(el("div", {class: "meta", text: payload.rows.length + " rows" + stats}));
      output.appendChild(tableOf(payload.columns, payload.rows));
    }).catch(function (e) {
      output.textContent = "";
      output.appendChild(el("pre", {class: "error", text: "Error: " + e.message}));
    }).then(function () { button.disabled = false; });
  });

  // -- start ------------------------------------------------------------------------------------

  function start() {
    every(LIVE_MS, pollLive);
    every(NETWORK_MS, pollNetwork);
    every(RATES_MS, pollRates);
    pollRates().catch(function (e) { setLive(false, "not updating: " + e.message); });
  }

  // The server's page is complete: let the browser paint it before the first chart is drawn.
  requestAnimationFrame(function () { setTimeout(start, 0); });
})();
