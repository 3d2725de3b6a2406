"""The metadata picture: clusters with their operators and tables, drawn as well-formed SVG."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from anylog_tw.front.web.netmap import bands, render_svg

SVG = "{http://www.w3.org/2000/svg}"

POLICIES = [
    {"master": {"name": "m1", "ip": "10.0.0.1", "port": 32048}},
    {"cluster": {"name": "east", "id": "c1", "table": [{"dbms": "lsl", "name": "ping"}, {"dbms": "lsl", "name": "cpu"}]}},
    {"cluster": {"name": "east-more", "id": "c1b", "parent": "c1", "table": [{"dbms": "lsl", "name": "disk"}]}},
    {"cluster": {"name": "west", "id": "c2", "dbms": "aiops"}},
    {"operator": {"name": "op1", "ip": "10.0.0.2", "port": 32048, "cluster": "c1"}},
    {"operator": {"name": "op2", "ip": "10.0.0.3", "port": 32048, "cluster": "c1"}},
    {"operator": {"name": "op3", "ip": "10.0.0.4", "port": 32048, "cluster": "c2"}},
    {"operator": {"name": "lost", "ip": "10.0.0.5", "port": 32048, "cluster": "nowhere"}},
    {"table": {"dbms": "lsl", "name": "ping"}},
    {"table": {"dbms": "lsl", "name": "orphan"}},
]


def kinds(svg: str) -> dict[str, list[str]]:
    root = ET.fromstring(svg)
    out: dict[str, list[str]] = {}
    for g in root.iter(f"{SVG}g"):
        out.setdefault(g.get("data-kind"), []).append(g.find(f"{SVG}title").text)
    return out


def test_each_cluster_is_a_band_with_its_operators_and_tables_and_child_clusters_count_for_the_parent():
    groups, others = bands(POLICIES)
    assert [b.name for b in groups] == ["east", "west", "no cluster"]
    east, west, loose = groups
    assert [o["name"] for o in east.operators] == ["op1", "op2"] and east.tables == ["lsl.ping", "lsl.cpu", "lsl.disk"]
    assert west.tables == ["aiops.*"] and [o["name"] for o in west.operators] == ["op3"]
    assert [o["name"] for o in loose.operators] == ["lost"] and loose.tables == ["lsl.orphan"]
    assert [k for k, _ in others] == ["master"]


def test_the_svg_parses_and_marks_this_node_and_the_peers_by_state():
    svg = render_svg(POLICIES, own_address="10.0.0.2:32048",
                     peers={"10.0.0.3:32048": "active", "10.0.0.4:32048": "not responding"})
    found = kinds(svg)
    assert len(found["cluster"]) == 3 and len(found["operator"]) == 4 and len(found["table"]) == 5
    assert found["master"] == ["master m1 10.0.0.1:32048"]
    root = ET.fromstring(svg)
    classes = {g.find(f"{SVG}title").text.split()[1]: g.get("class") for g in root.iter(f"{SVG}g")
               if g.get("data-kind") == "operator"}
    assert classes == {"op1": "nm-node self", "op2": "nm-node up", "op3": "nm-node down", "lost": "nm-node unknown"}


def test_names_are_escaped_and_long_ones_shortened_with_the_full_name_in_the_tooltip():
    name = "<script>alert(1)</script>" + "x" * 40
    svg = render_svg([{"cluster": {"name": name, "id": "c9", "table": [{"dbms": "d", "name": "t&u"}]}}])
    assert "<script>" not in svg
    root = ET.fromstring(svg)
    [cluster] = [g for g in root.iter(f"{SVG}g") if g.get("data-kind") == "cluster"]
    assert cluster.find(f"{SVG}title").text == f"cluster {name} c9"
    assert cluster.find(f"{SVG}text").text.endswith("\u2026")


def test_an_empty_network_says_so():
    root = ET.fromstring(render_svg([]))
    assert "No clusters" in "".join(root.itertext())
