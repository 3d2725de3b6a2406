"""The publisher's routing rule (anylog_tw/ingest/routing.py): pure functions, property-tested."""

from __future__ import annotations

import collections

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from anylog_tw.ingest import routing
from anylog_tw.ingest.routing import Topology, rank, route
from anylog_tw.metadata.query import MemoryStore

addresses = st.lists(st.integers(1024, 65535).map(lambda p: f"10.0.0.{p % 250 + 1}:{p}"), min_size=1, max_size=6,
                     unique=True)
keys = st.text("0123456789abcdef", min_size=32, max_size=32)
names = st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True)


def everyone(_):
    return True


def nobody(_):
    return False


# --- ranking ----------------------------------------------------------------------------------


@given(keys, addresses)
def test_rank_is_a_permutation_independent_of_input_order(key, cands):
    ranked = rank(key, cands)
    assert sorted(ranked) == sorted(cands)
    assert rank(key, list(reversed(cands))) == ranked


@given(keys, addresses, st.data())
def test_removing_a_candidate_only_moves_the_keys_it_won(key, cands, data):
    """Rendezvous hashing: the winner stays the winner unless it is the one removed."""
    assume(len(cands) > 1)
    gone = data.draw(st.sampled_from(cands))
    before = rank(key, cands)
    after = rank(key, [c for c in cands if c != gone])
    assert after == [c for c in before if c != gone]


def test_rank_spreads_keys_evenly():
    """2,000 keys over 4 candidates: each wins close to a quarter."""
    cands = [f"10.0.0.{i}:32048" for i in range(1, 5)]
    wins = collections.Counter(rank(f"{i:032x}", cands)[0] for i in range(2000))
    assert set(wins) == set(cands)
    assert all(400 <= n <= 600 for n in wins.values()), wins


# --- rules ------------------------------------------------------------------------------------


@given(names, names, addresses, addresses)
def test_rules_add_and_remove(dbms, table, first, second):
    rules = routing.add_rule({}, dbms, table, first)
    rules = routing.add_rule(rules, dbms, table, second)
    both = list(dict.fromkeys(first + second))
    assert list(routing.rule_for(rules, dbms, table)) == both
    less = routing.remove_rule(rules, dbms, table, first)
    left = [d for d in both if d not in first]
    assert routing.rule_for(less, dbms, table) == (tuple(left) if left else None)
    assert routing.remove_rule(rules, dbms, table) == {}


def test_a_table_rule_wins_over_the_dbms_rule():
    rules = routing.add_rule(routing.add_rule({}, "lsl", "*", ["a:1"]), "lsl", "ping", ["b:2"])
    assert routing.rule_for(rules, "lsl", "ping") == ("b:2",)
    assert routing.rule_for(rules, "lsl", "pong") == ("a:1",)
    assert routing.rule_for(rules, "other", "ping") is None


@given(keys, addresses, st.sets(st.integers(0, 5)))
def test_a_rule_sends_to_its_first_live_destination_whatever_the_metadata(key, dests, down_idx):
    down = {dests[i] for i in down_idx if i < len(dests)}
    topo = Topology({"c1": ("9.9.9.9:1",)}, {"c1": ("9.9.9.9:1",)})
    r = route("lsl", "ping", key, {("lsl", "ping"): tuple(dests)}, topo, lambda a: a not in down)
    assert r.how == "rule"
    live = [d for d in rank(key, dests) if d not in down]
    assert r.target == (live[0] if live else None)
    assert r.candidates == tuple(rank(key, dests))
    assert (r.reason == "") == bool(live)


# --- the metadata -----------------------------------------------------------------------------



def _partition(args):
    """Operators (each address once in the network) spread over k clusters c1..ck."""
    ops, k = args
    out: dict[str, list[str]] = {}
    for i, a in enumerate(ops):
        out.setdefault(f"c{i % k + 1}", []).append(a)
    return out


clusters_st = st.tuples(st.lists(st.integers(1024, 65535).map(lambda p: f"10.0.{p % 7}.{p % 250 + 1}:{p}"),
                                 min_size=1, max_size=12, unique=True),
                        st.integers(1, 4)).map(_partition)


@given(keys, clusters_st, st.sets(st.integers(0, 30)))
def test_a_hosted_table_goes_to_the_cluster_its_hash_ranks_first_whoever_is_down(key, hosting, down_idx):
    everyone_ops = [a for ops in hosting.values() for a in ops]
    down = {everyone_ops[i] for i in down_idx if i < len(everyone_ops)}
    topo = Topology({c: tuple(o) for c, o in hosting.items()}, {})
    r = route("lsl", "ping", key, {}, topo, lambda a: a not in down)
    cluster = rank(key, hosting)[0]
    assert r.how == "metadata" and r.cluster == cluster
    ranked = rank("lsl.ping", hosting[cluster])
    assert r.candidates == tuple(ranked)
    live = [a for a in ranked if a not in down]
    assert r.target == (live[0] if live else None)
    if r.target is None:
        assert cluster in r.reason


@given(clusters_st)
@settings(max_examples=50)
def test_within_a_cluster_one_operator_takes_every_file_of_a_table(hosting):
    topo = Topology({c: tuple(o) for c, o in hosting.items()}, {})
    targets = collections.defaultdict(set)
    for i in range(40):
        r = route("lsl", "ping", f"{i:032x}", {}, topo, everyone)
        targets[r.cluster].add(r.target)
    assert all(len(t) == 1 for t in targets.values())


def test_a_partitioned_table_is_split_evenly_and_the_same_way_every_time():
    topo = Topology({"c1": ("a:1",), "c2": ("b:1",)}, {})
    first = [route("lsl", "t", f"{i:032x}", {}, topo, everyone).target for i in range(1000)]
    again = [route("lsl", "t", f"{i:032x}", {}, topo, everyone).target for i in range(1000)]
    assert first == again
    counts = collections.Counter(first)
    assert 420 <= counts["a:1"] <= 580, counts


@given(keys, clusters_st, st.sets(st.sampled_from(["c1", "c2", "c3", "c4"])))
def test_a_table_nobody_hosts_goes_to_one_cluster_with_a_live_operator(key, clusters, dead_clusters):
    down = {a for c in dead_clusters if c in clusters for a in clusters[c]}
    topo = Topology({}, {c: tuple(o) for c, o in clusters.items()})
    live = lambda a: a not in down  # noqa: E731
    r = route("lsl", "new", key, {}, topo, live)
    assert r.how == "unhosted"
    up = [c for c in clusters if c not in dead_clusters]
    if not up:
        assert r.target is None and set(r.candidates) == {a for o in clusters.values() for a in o}
        return
    assert r.cluster == rank("lsl.new", up)[0]
    assert r.target in clusters[r.cluster] and live(r.target)
    # Every file of the table makes the same choice (the table decides, not the file).
    other = route("lsl", "new", "f" * 32, {}, topo, live)
    assert (other.cluster, other.target) == (r.cluster, r.target)


def test_nothing_to_send_to():
    r = route("lsl", "ping", "0" * 32, {}, Topology({}, {}), everyone)
    assert (r.how, r.target) == ("none", None) and "no cluster hosts lsl.ping" in r.reason
    r = route("lsl", "ping", "0" * 32, {}, Topology({"c1": ()}, {}), everyone)
    assert (r.how, r.target) == ("none", None) and "no operator policy" in r.reason
    r = route("lsl", "ping", "0" * 32, {}, Topology({"c1": ("a:1",)}, {}), nobody)
    assert r.target is None and r.candidates == ("a:1",)


# --- from policies ----------------------------------------------------------------------------


def _store(*policies):
    return MemoryStore(list(policies))


def test_topology_reads_clusters_child_clusters_and_operators():
    store = _store(
        {"cluster": {"id": "c1", "name": "one", "table": [{"dbms": "lsl", "name": "ping"}]}},
        {"cluster": {"id": "c2", "name": "two"}},
        {"cluster": {"id": "k2", "parent": "c2", "table": [{"dbms": "lsl", "name": "ping"}]}},
        {"operator": {"id": "o1", "ip": "10.0.0.1", "port": 32048, "cluster": "c1"}},
        {"operator": {"id": "o2", "ip": "10.0.0.2", "port": 32048, "cluster": "c2"}},
        {"operator": {"id": "o3", "ip": "10.0.0.3", "port": 32048, "cluster": "c2"}},
        {"operator": {"id": "o4", "ip": "10.0.0.4", "port": 32048}},  # no cluster: never a target
    )
    topo = routing.topology(store, "lsl", "ping")
    assert dict(topo.hosting) == {"c1": ("10.0.0.1:32048",), "c2": ("10.0.0.2:32048", "10.0.0.3:32048")}
    assert dict(topo.clusters) == dict(topo.hosting)
    assert dict(routing.topology(store, "lsl", "nobody").hosting) == {}
