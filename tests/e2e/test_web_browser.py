"""The node's page in headless Chromium, against real `twistd -n anylog` processes.

The browser loads the page with no console error, shows the processes and the tables and keeps
them current, runs `get status` in the command box, charts a time series from the query box, and
asks for a login when the REST server has credentials.  Screenshots go to the test's folder, or to
`$ANYLOG_SCREENSHOTS` (the docs' pictures: `ANYLOG_SCREENSHOTS=docs/images pytest tests/e2e/test_web_browser.py`).
"""

from __future__ import annotations

import json
import os
import pathlib
import urllib.request

import pytest

from tests.e2e.browser import browser, console_errors  # noqa: F401 (the fixture)
from tests.e2e.harness import free_port, wait_for

pytestmark = pytest.mark.browser


def put(port: int, dbms: str, table: str, rows: list[dict]) -> None:
    body = "\n".join(json.dumps(r) for r in rows).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{port}/", data=body, method="PUT",
                                     headers={"dbms": dbms, "table": table, "User-Agent": "AnyLog/1.23"})
    with urllib.request.urlopen(request, timeout=20) as response:
        assert response.status == 200


def shot(driver, tmp_path, name: str) -> pathlib.Path:
    """A full-page screenshot (the window grown to the page's height)."""
    folder = pathlib.Path(os.environ.get("ANYLOG_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1400, min(max(height, 600), 4000))
    driver.execute_script("document.activeElement && document.activeElement.blur(); window.scrollTo(0, 0);")
    path = folder / f"{name}.png"
    driver.save_screenshot(str(path))
    driver.set_window_size(1400, 1000)
    return path


def text_of(driver, selector: str) -> str:
    """The element's visible text, read in one step in the page (the live poll replaces rows under us)."""
    return driver.execute_script("var e = document.querySelector(arguments[0]);"
                                 "return e ? e.innerText.replace(/\\s+/g, ' ').trim() : '';", selector)


def until(driver, predicate, what: str, timeout: float = 15.0):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(lambda d: predicate(d), message=what)


OPERATORS = [("op-east-1", "east"), ("op-east-2", "east"), ("op-west-1", "west")]


def network_script(tcp_peer: int) -> str:
    """Cluster and operator policies, so the page has a network to draw."""
    lines = []
    for name, tables in (("east", ["ping_sensor", "percentagecpu_sensor"]), ("west", ["power_meter"])):
        tables_json = ", ".join(f'{{"dbms": "lsl_demo", "name": "{t}"}}' for t in tables)
        lines.append(f'blockchain insert where policy = {{"cluster": {{"name": "{name}", "company": "acme", '
                     f'"id": "{name}-id", "table": [{tables_json}]}}}} and local = true')
    for i, (name, cluster) in enumerate(OPERATORS):
        port = tcp_peer if i == 1 else 33000 + i
        lines.append(f'blockchain insert where policy = {{"operator": {{"name": "{name}", "company": "acme", '
                     f'"ip": "127.0.0.1", "port": {port}, "cluster": "{cluster}-id"}}}} and local = true')
    return "\n".join(lines) + "\n"


def test_the_page_shows_the_node_live_runs_commands_and_charts_a_query(nodes, browser, tmp_path):  # noqa: F811
    rest, tcp, tcp_peer = free_port(), free_port(), free_port()
    nodes("peer", f"run tcp server where external_ip = 127.0.0.1 and external_port = {tcp_peer} and bind = true\n")
    node = nodes("edge1", f"""run tcp server where external_ip = 127.0.0.1 and external_port = {tcp} and bind = true
run rest server where internal_ip = 127.0.0.1 and internal_port = {rest}
connect dbms lsl_demo where type = sqlite
connect dbms almgm where type = sqlite
run operator where create_table = true and update_tsd_info = true
""" + network_script(tcp_peer))
    assert "running" in node.command(f"run client (127.0.0.1:{tcp_peer}) get status")
    readings = [{"timestamp": f"2026-11-28 10:{m:02d}:00", "value": round(20 + 5 * (m % 12) ** 0.5, 2),
                 "device": "pump-1"} for m in range(60)]
    put(rest, "lsl_demo", "ping_sensor", readings)
    put(rest, "lsl_demo", "percentagecpu_sensor", [{"timestamp": "2026-11-28 10:00:00", "value": v} for v in range(25)])
    wait_for(lambda: "percentagecpu_sensor" in node.command("get ingest rate"), 15, "both files ingested")

    browser.get(f"http://127.0.0.1:{rest}/")
    assert browser.title == "edge1 · anylog-tw"
    assert text_of(browser, '#processes tr[data-process="REST"]').startswith("REST Running")
    assert text_of(browser, '#processes tr[data-process="Operator"]').startswith("Operator Running")
    row = text_of(browser, '#tables tr[data-table="lsl_demo.ping_sensor"]')
    assert row.startswith("lsl_demo ping_sensor 60 1 0"), row
    assert f"127.0.0.1:{tcp_peer}" in text_of(browser, "#peers")
    assert len(browser.find_elements("css selector", '#network g[data-kind="operator"]')) == 3
    assert browser.find_elements("css selector", "#network g.nm-node.up")  # the peer it reached
    until(browser, lambda d: d.find_elements("css selector", "#rate-chart .uplot"), "the ingest chart")

    # live: a process stopped from the console leaves the page's table without a reload
    assert "stopped" in node.command("exit operator").lower()
    until(browser, lambda d: text_of(d, '#processes tr[data-process="Operator"]').startswith("Operator Not declared"),
          "the Operator row to change")
    put(rest, "lsl_demo", "power_meter", [{"timestamp": "2026-11-28 10:00:00", "value": 1}])  # no operator: no rows
    assert "error" not in node.command("run operator where create_table = true and update_tsd_info = true").lower()
    until(browser, lambda d: text_of(d, '#tables tr[data-table="lsl_demo.power_meter"]').startswith(
        "lsl_demo power_meter 1 1 0"), "a new table's row to appear")

    # the command box
    browser.find_element("id", "command-input").send_keys("get status")
    browser.find_element("id", "command-run").click()
    until(browser, lambda d: "edge1@127.0.0.1" in text_of(d, "#command-output"), "get status in the command box")
    assert text_of(browser, "#command-output") == f"edge1@127.0.0.1:{tcp} running"
    browser.find_element("id", "command-input").clear()
    browser.find_element("id", "command-input").send_keys("get processes where format = json")
    browser.find_element("id", "command-run").click()
    until(browser, lambda d: d.find_elements("css selector", "#command-output .tree details"), "a JSON tree")

    # the query box charts a time series
    sql = browser.find_element("id", "query-sql")
    sql.clear()
    sql.send_keys("select timestamp, value from ping_sensor order by timestamp")
    browser.find_element("id", "query-run").click()
    until(browser, lambda d: d.find_elements("css selector", "#query-chart .uplot"), "the query's line chart")
    assert "60 rows" in text_of(browser, "#query-output")
    assert len(browser.find_elements("css selector", "#query-output table tbody tr")) == 60

    assert console_errors(browser) == []
    shot(browser, tmp_path, "web-page")


def test_with_credentials_the_browser_is_asked_to_log_in(nodes, browser, tmp_path):  # noqa: F811
    rest = free_port()
    nodes("locked", f"run rest server where internal_ip = 127.0.0.1 and internal_port = {rest} and user = admin and "
                    f"password = s3cret\n")
    browser.get(f"http://127.0.0.1:{rest}/")
    assert browser.find_elements("id", "login-form") and not browser.find_elements("id", "processes")
    browser.find_element("id", "login-user").send_keys("admin")
    browser.find_element("id", "login-password").send_keys("wrong")
    browser.find_element("id", "login-submit").click()
    until(browser, lambda d: "Wrong user or password" in text_of(d, "#login-message"), "the refusal")
    shot(browser, tmp_path, "web-login")
    browser.find_element("id", "login-user").send_keys("admin")
    browser.find_element("id", "login-password").send_keys("s3cret")
    browser.find_element("id", "login-submit").click()
    until(browser, lambda d: d.find_elements("id", "processes"), "the page after the login")
    assert text_of(browser, '#processes tr[data-process="REST"]').startswith("REST Running")
    browser.find_element("css selector", "#logout-form button").click()
    until(browser, lambda d: d.find_elements("id", "login-form"), "the login page after logging out")
    # the failed login was a 401: the browser logs it; nothing else went wrong
    errors = console_errors(browser)
    assert all("401" in e for e in errors), errors
