"""The ledger file and its commands: ids, dates, members, corrupt lines, atomic rewrites."""

from __future__ import annotations

import json
import os
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.defer import ensureDeferred

from anylog_tw.base.origin import Origin
from anylog_tw.metadata.layer import Metadata
from anylog_tw.metadata.ledger import (
    DuplicatePolicy,
    Ledger,
    PolicyError,
    iso_date,
    parse_lines,
    parse_policy,
    policy_id,
    write_atomically,
)
from tests.helpers import run, unit_node

OPERATOR = {"operator": {"name": "op1", "ip": "10.0.0.5", "port": 32148, "cluster": "c1"}}


def inner(policy):
    return next(iter(policy.values()))


@pytest.fixture
def ledger(tmp_path):
    return Ledger(str(tmp_path / "blockchain" / "blockchain.json"), clock=lambda: 1654479362.312181,
                  rng=random.Random(7))


# --- policies as values --------------------------------------------------------------------


def test_the_id_is_the_md5_of_canonical_json_without_date_and_ledger():
    import hashlib

    expected = hashlib.md5(b'{"operator":{"cluster":"c1","ip":"10.0.0.5","name":"op1","port":32148}}').hexdigest()
    assert policy_id(OPERATOR) == expected
    dated = {"operator": dict(OPERATOR["operator"], date="2020-01-01T00:00:00.0Z", ledger="global")}
    assert policy_id(dated) == expected


@settings(max_examples=100)
@given(st.dictionaries(st.text(min_size=1, max_size=5), st.one_of(st.integers(), st.text(max_size=5)),
                       max_size=6), st.randoms())
def test_the_id_does_not_depend_on_key_order(attrs, rnd):
    items = list(attrs.items())
    rnd.shuffle(items)
    assert policy_id({"t": attrs}) == policy_id({"t": dict(items)})


def test_dates_are_iso_utc_with_microseconds_and_z():
    assert iso_date(1654479362.312181) == "2022-06-06T01:36:02.312181Z"


@pytest.mark.parametrize("text, fragment", [
    ("not json", "not valid JSON"),
    ("[1, 2]", "not list"),
    ('{"a": {}, "b": {}}', "exactly one root key"),
    ("{}", "exactly one root key"),
    ('{"operator": 5}', "must be a JSON object"),
])
def test_bad_policies_are_refused_with_a_reason(text, fragment):
    with pytest.raises(PolicyError) as e:
        parse_policy(text)
    assert fragment in e.value.message


# --- the ledger ----------------------------------------------------------------------------


def test_add_completes_appends_and_indexes(ledger):
    stored = ledger.add(OPERATOR)
    body = inner(stored)
    assert body["id"] == policy_id(OPERATOR)
    assert body["date"] == "2022-06-06T01:36:02.312181Z" and body["ledger"] == "local"
    assert 1 <= body["member"] <= 255
    assert ledger.by_id(body["id"]) is stored and list(ledger.of_type("operator")) == [stored]
    with open(ledger.path) as f:
        assert [json.loads(line) for line in f] == [stored]


def test_a_user_id_is_kept_and_a_duplicate_is_refused(ledger):
    ledger.add({"config": {"id": "mine", "x": 1}})
    assert ledger.by_id("mine") is not None
    with pytest.raises(DuplicatePolicy):
        ledger.add({"config": {"id": "mine", "x": 2}})
    with pytest.raises(DuplicatePolicy):
        ledger.add(OPERATOR), ledger.add(OPERATOR)


def test_members_are_unique_within_a_cluster(ledger):
    members = [inner(ledger.add({"operator": {"name": f"op{i}", "cluster": "c1"}}))["member"] for i in range(255)]
    assert sorted(members) == list(range(1, 256))
    with pytest.raises(PolicyError) as e:
        ledger.add({"operator": {"name": "one too many", "cluster": "c1"}})
    assert "no member number is free" in e.value.message
    assert inner(ledger.add({"operator": {"name": "other cluster", "cluster": "c2"}}))["member"] in range(1, 256)


def test_a_given_member_that_is_taken_is_refused(ledger):
    m = inner(ledger.add(OPERATOR))["member"]
    with pytest.raises(PolicyError):
        ledger.add({"operator": {"name": "op2", "cluster": "c1", "member": m}})


def test_the_version_follows_the_file_bytes(ledger):
    import hashlib

    ledger.add(OPERATOR)
    ledger.add({"config": {"x": 1}})
    with open(ledger.path, "rb") as f:
        assert ledger.version == hashlib.md5(f.read()).hexdigest()
    again = Ledger(ledger.path)
    again.load()
    assert again.version == ledger.version and again.all() == ledger.all()


def test_corrupt_lines_are_skipped_and_reported(ledger):
    ledger.add(OPERATOR)
    with open(ledger.path, "a") as f:
        f.write("{not json\n")
        f.write('{"two": {}, "roots": {}}\n')
        f.write('{"config": {"no": "id"}}\n')
    ledger.add({"config": {"x": 1}})
    again = Ledger(ledger.path)
    parsed = again.load()
    assert len(again) == 2
    assert [n for n, _ in parsed.errors] == [2, 3, 4]
    assert "exactly one root key" in parsed.errors[1][1] and "no id" in parsed.errors[2][1]


def test_a_line_cut_by_a_crash_is_skipped_and_the_next_append_starts_a_new_line(ledger):
    ledger.add(OPERATOR)
    with open(ledger.path, "a") as f:
        f.write('{"config": {"id": "half", "x"')  # the node died here
    again = Ledger(ledger.path)
    assert len(again.load().errors) == 1
    again.add({"config": {"x": 2}})
    third = Ledger(ledger.path)
    third.load()
    assert [inner(p).get("x") for p in third.all()] == [None, 2]


def test_a_later_line_with_the_same_id_replaces_the_earlier_one():
    parsed = parse_lines('{"c": {"id": "1", "v": 1}}\n{"c": {"id": "2"}}\n{"c": {"id": "1", "v": 2}}\n')
    assert [inner(p) for p in parsed.policies] == [{"id": "1", "v": 2}, {"id": "2"}]


def test_atomic_write_keeps_old_and_a_leftover_new_file_is_recovered(tmp_path):
    path = str(tmp_path / "b.json")
    write_atomically(path, b"one\n")
    write_atomically(path, b"two\n", keep_old=True)
    assert open(path).read() == "two\n" and open(path + ".old").read() == "one\n"
    assert not os.path.exists(path + ".new")
    os.unlink(path)
    with open(path + ".new", "w") as f:
        f.write('{"c": {"id": "x"}}\n')
    ledger = Ledger(path)
    ledger.load()
    assert ledger.by_id("x") is not None and os.path.exists(path)


def test_equality_index_stays_current_after_appends(ledger):
    ledger.add({"operator": {"name": "a", "cluster": "c"}})
    assert len(ledger.equal("operator", "name", "a")) == 1
    ledger.add({"operator": {"name": "a", "cluster": "d"}})
    assert len(ledger.equal("operator", "name", "a")) == 2


# --- commands on a node --------------------------------------------------------------------


@pytest.fixture
def node(tmp_path):
    return unit_node(tmp_path)


def ok(node, text):
    reply = run(node, text)
    assert reply.ok, reply.text
    return reply


def test_insert_get_version_and_reload(node):
    ok(node, "p = create policy operator where name = op1 and ip = 10.0.0.5 and port = 32148 and cluster = c1")
    assert json.loads(node.dictionary["p"]) == {"operator": {"name": "op1", "ip": "10.0.0.5", "port": 32148,
                                                             "cluster": "c1"}}
    assert "added locally" in ok(node, "blockchain insert where policy = !p").text
    version = ok(node, "get metadata version").text
    assert len(version) == 32
    assert ok(node, "blockchain get operator where name = op1 bring.ip_port").text == "10.0.0.5:32148"
    assert "1 policies loaded" in ok(node, "blockchain load metadata").text
    assert ok(node, "get metadata version").text == version
    assert "already in the ledger" in run(node, "blockchain insert where policy = !p").text


def test_create_policy_types_values(node):
    reply = ok(node, 'create policy cluster where name = c1 and n = 3 and f = 1.5 and on = true and tables = (a, b) '
                     'and extra = {"k": [1]} and city = "San Jose"')
    assert reply.json_data() == {"cluster": {"name": "c1", "n": 3, "f": 1.5, "on": True, "tables": ["a", "b"],
                                             "extra": {"k": [1]}, "city": "San Jose"}}
    assert "name" in ok(node, "create policy master with defaults where port = 1").json_data()["master"]
    assert not run(node, "create policy").ok


def test_prepare_policy_updates_the_variable(node):
    node.dictionary["p"] = '{"config": {"x": 1}}'
    data = ok(node, "blockchain prepare policy !p").json_data()
    assert set(inner(data)) == {"x", "id", "date"}
    assert json.loads(node.dictionary["p"]) == data
    assert ok(node, "blockchain get config").json_data() == []


def test_delete_and_drop(node):
    ok(node, 'blockchain add {"config": {"id": "a1"}}')
    ok(node, 'blockchain add {"config": {"id": "a2"}}')
    ok(node, 'blockchain add {"config": {"id": "a3"}}')
    assert "1 removed" in ok(node, "blockchain delete policy where id = a1").text
    assert "no policy with id a1" in run(node, "blockchain delete policy where id = a1").text
    assert "2 policies dropped" in ok(node, "blockchain drop policy where id = a2,a3").text
    assert ok(node, "blockchain get config").json_data() == []
    assert not os.path.exists(node.dictionary["blockchain_file"] + ".new")


def test_bad_input_to_the_commands(node):
    assert "exactly one root key" in run(node, 'blockchain add {"a": {}, "b": {}}').text
    assert "needs a policy" in run(node, "blockchain add").text
    assert "not valid JSON" in run(node, "blockchain insert where policy = nonsense").text
    assert "give 'master = ip:port'" in run(node, 'blockchain insert where policy = {"c": {}} and local = false').text


def test_blockchain_test_reports_corrupt_lines(node):
    ok(node, 'blockchain add {"config": {"id": "a1"}}')
    with open(node.dictionary["blockchain_file"], "a") as f:
        f.write("garbage\n")
    data = ok(node, "blockchain test where format = json").json_data()
    assert data["lines"] == 2 and data["policies"] == 1 and not data["valid"]
    assert data["errors"][0].startswith("line 2")


def test_a_corrupt_line_at_load_is_an_error_log_entry_not_a_crash(node):
    path = node.dictionary["blockchain_file"]
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write('{"config": {"id": "a1"}}\nbroken line\n')
    assert len(ok(node, "blockchain get config").json_data()) == 1
    assert any("ledger line skipped" in e[-1] for e in node.errors.entries(None))


def test_wait_for_fires_on_insert_and_times_out_on_the_clock(node):
    d = ensureDeferred(node.execute('blockchain wait for {"config": {"id": "later"}} where timeout = 5 seconds'))
    assert not d.called
    ok(node, 'blockchain add {"config": {"id": "later"}}')
    assert d.result.ok
    d = ensureDeferred(node.execute('blockchain wait for {"config": {"id": "never"}} where timeout = 5 seconds'))
    node.reactor.advance(5)
    assert not d.result.ok and "after 5 seconds" in d.result.text
    assert node.component(Metadata).waiters == []


def test_insert_with_an_unreachable_master_stays_local(node):
    from anylog_tw.base.errors import PeerError

    async def down(address, text):
        raise PeerError(f"cannot connect to {address}")

    node.component(Metadata).set_ask(down)
    reply = ok(node, 'blockchain insert where policy = {"config": {"id": "k"}} and master = 10.9.9.9:1')
    assert "kept" not in reply.text and "will be pushed again" in reply.text
    assert inner(ok(node, "blockchain get config").json_data()[0])["ledger"] == "local"
    assert not run(node, 'blockchain insert where policy = {"config": {"id": "j"}} and local = false and '
                         'master = 10.9.9.9:1').ok


def test_insert_with_a_master_that_accepts_is_global_there_and_here(tmp_path):
    master = unit_node(tmp_path / "m")
    node = unit_node(tmp_path / "n")

    async def to_master(address, text):
        return await master.execute(text, Origin("peer", "write", "peer"))

    node.component(Metadata).set_ask(to_master)
    ok(node, "blockchain insert where policy = {\"operator\": {\"name\": \"o\", \"cluster\": \"c\"}} and "
             "master = 1.2.3.4:5")
    here = ok(node, "blockchain get operator").json_data()
    there = ok(master, "blockchain get operator").json_data()
    assert inner(here[0])["ledger"] == "global" and inner(there[0])["ledger"] == "global"
    assert inner(here[0])["member"] == inner(there[0])["member"]
    assert inner(here[0])["id"] == inner(there[0])["id"]


# --- the fast parse agrees with the careful one --------------------------------------------

line_st = st.one_of(
    st.builds(lambda i, v: json.dumps({"c": {"id": f"i{i}", "v": v}}), st.integers(0, 5), st.integers()),
    st.sampled_from(['{"c": {"v": 1}}', "garbage", '{"a": {}, "b": {}}', "", "   ", '{"c": 5}', "1,2",
                     '{"c": {"id": 3}}', '[{"c": {"id": "x"}}]']),
)


@settings(max_examples=300)
@given(st.lists(line_st, max_size=12), st.booleans())
def test_the_one_call_parse_agrees_with_the_line_by_line_parse(lines, newline_at_end):
    from anylog_tw.metadata.ledger_file import _parse_slowly, parse_and_build

    data = ("\n".join(lines) + ("\n" if newline_at_end else "")).encode()
    parsed, state = parse_and_build(data)
    slow = _parse_slowly(data)
    assert parsed.policies == slow.policies and parsed.errors == slow.errors and parsed.lines == slow.lines
    assert state.policies == slow.policies and set(state.by_id) == {inner(p)["id"] for p in slow.policies}


def test_after_a_merge_the_version_is_the_md5_of_the_file(tmp_path):
    import hashlib

    node = unit_node(tmp_path)
    ok(node, 'blockchain add {"config": {"id": "mine"}}')
    meta = node.component(Metadata)
    from twisted.internet.defer import Deferred

    from tests.helpers import fired

    count, kept = fired(Deferred.fromCoroutine(meta.install_master_copy('{"config": {"id": "g1"}}')))
    assert count == 2 and [inner(p)["id"] for p in kept] == ["mine"]
    with open(meta.ledger.path, "rb") as f:
        assert meta.ledger.version == hashlib.md5(f.read()).hexdigest()
    assert [inner(p)["id"] for p in meta.ledger.all()] == ["g1", "mine"]
    assert os.path.exists(meta.ledger.path + ".old")


def test_a_master_refuses_a_pushed_operator_whose_member_is_taken(node):
    ok(node, 'blockchain push {"operator": {"name": "a", "cluster": "c", "member": 5}}')
    reply = run(node, 'blockchain push {"operator": {"name": "b", "cluster": "c", "member": 5}}')
    assert not reply.ok and "member 5 is taken" in reply.text
    assert "already in the ledger" in ok(node, 'blockchain push {"operator": {"name": "a", "cluster": "c", '
                                               '"member": 5}}').text
    assert ok(node, "blockchain get operator bring.count").text == "1"


def test_versions_reached_by_appends_give_their_offsets_and_a_rewrite_forgets_them(ledger):
    v0 = ledger.version
    ledger.add({"config": {"id": "a"}})
    v1, size1 = ledger.version, ledger.size
    ledger.add({"config": {"id": "b"}})
    assert ledger.offset_of(v0) == 0 and ledger.offset_of(v1) == size1
    assert ledger.offset_of(ledger.version) == os.path.getsize(ledger.path)
    ledger.load()
    assert ledger.offset_of(v1) is None and ledger.offset_of(ledger.version) == ledger.size


def test_merging_a_delta_replaces_a_local_policy_in_place(ledger):
    ledger.add({"config": {"id": "a"}}, "local")
    ledger.add({"config": {"id": "b"}}, "local")
    lines = [{"config": {"id": "a", "ledger": "global"}}, {"config": {"id": "c", "ledger": "global"}}]
    ledger.write_lines(b"".join(json.dumps(p).encode() + b"\n" for p in lines))
    ledger.merge(lines)
    assert [(inner(p)["id"], inner(p)["ledger"]) for p in ledger.all()] == [("a", "global"), ("b", "local"),
                                                                         ("c", "global")]
    assert [inner(p)["id"] for p in ledger.of_type("config")] == ["a", "b", "c"]
    again = Ledger(ledger.path)
    again.load()
    assert again.all() == ledger.all() and again.version == ledger.version


def test_a_policy_the_master_refuses_is_not_kept_locally(tmp_path):
    master = unit_node(tmp_path / "m")
    node = unit_node(tmp_path / "n")

    async def to_master(address, text):
        return await master.execute(text, Origin("peer", "write", "peer"))

    node.component(Metadata).set_ask(to_master)
    ok(master, 'blockchain push {"operator": {"name": "a", "cluster": "c", "member": 9}}')
    reply = run(node, 'blockchain insert where policy = {"operator": {"name": "b", "cluster": "c", "member": 9}} '
                      'and master = 1.2.3.4:5')
    assert not reply.ok and "refused" in reply.text and "member 9 is taken" in reply.text
    assert ok(node, "blockchain get operator").json_data() == []


def test_blockchain_get_id_is_the_id_an_insert_gives(node):
    pid = ok(node, 'blockchain get id {"cluster": {"name": "c1", "company": "acme"}}').text
    assert pid == policy_id({"cluster": {"company": "acme", "name": "c1"}})
    ok(node, 'blockchain add {"cluster": {"company": "acme", "name": "c1"}}')
    assert ok(node, "blockchain get cluster bring [cluster][id]").text == pid


def test_a_node_that_died_while_writing_the_new_ledger_keeps_the_old_one(ledger):
    ledger.add({"config": {"id": "old"}})
    with open(ledger.path + ".new", "wb") as f:
        f.write(b'{"config":{"id":"new1"}}\n{"config":{"id":"ne')  # killed mid-write, before the rename
    again = Ledger(ledger.path)
    again.load()
    assert [inner(p)["id"] for p in again.all()] == ["old"]
    assert not os.path.exists(ledger.path + ".new")


# --- a stateful property: memory and file never disagree ----------------------------------

from hypothesis.stateful import RuleBasedStateMachine, invariant, rule  # noqa: E402


class LedgerMachine(RuleBasedStateMachine):
    """Random adds, deletes (rewrites), deltas and reloads: the ledger in memory is always what a
    fresh load of its file gives, and its version is always the MD5 of the file."""

    def __init__(self):
        super().__init__()
        import tempfile

        self.dir = tempfile.mkdtemp()
        self.ledger = Ledger(os.path.join(self.dir, "blockchain.json"), rng=random.Random(0))
        self.n = 0

    @rule(kind=st.sampled_from(["config", "operator"]), cluster=st.sampled_from(["a", "b"]))
    def add(self, kind, cluster):
        self.n += 1
        self.ledger.add({kind: {"n": self.n, "cluster": cluster}}, random.choice(["local", "global"]))

    @rule(data=st.data())
    def delete(self, data):
        if not len(self.ledger):
            return
        victim = data.draw(st.sampled_from([inner(p)["id"] for p in self.ledger.all()]))
        keep = self.ledger.without([victim])
        from anylog_tw.metadata.ledger import render

        blob = render(keep)
        write_atomically(self.ledger.path, blob)
        self.ledger.install(keep, blob)

    @rule(data=st.data())
    def delta(self, data):
        """Lines from a master: some new, some replacing local policies."""
        ids = [inner(p)["id"] for p in self.ledger.all()]
        again = data.draw(st.lists(st.sampled_from(ids), max_size=2, unique=True)) if ids else []
        self.n += 1
        lines = [{"config": {"id": f"m{self.n}", "ledger": "global"}}]
        lines += [{next(iter(self.ledger.by_id(i))): dict(inner(self.ledger.by_id(i)), ledger="global")}
                  for i in again]
        self.ledger.write_lines(b"".join(json.dumps(p).encode() + b"\n" for p in lines))
        self.ledger.merge(lines)

    @rule()
    def reload(self):
        self.ledger.load()

    @invariant()
    def file_and_memory_agree(self):
        import hashlib

        fresh = Ledger(self.ledger.path)
        fresh.load()
        assert fresh.all() == self.ledger.all()
        assert fresh.local_policies() == self.ledger.local_policies()
        assert self.ledger.local_policies() == [p for p in self.ledger.all() if inner(p)["ledger"] == "local"]
        for t in ("config", "operator"):
            assert list(fresh.of_type(t)) == list(self.ledger.of_type(t))
        data = open(self.ledger.path, "rb").read() if os.path.exists(self.ledger.path) else b""
        assert self.ledger.version == hashlib.md5(data).hexdigest() and self.ledger.size == len(data)


TestLedgerMachine = LedgerMachine.TestCase
TestLedgerMachine.settings = settings(max_examples=40, stateful_step_count=15, deadline=None)


def test_an_unreadable_ledger_is_a_clear_error_and_is_read_again_later(node):
    path = node.dictionary["blockchain_file"]
    os.makedirs(path)  # a directory where the file should be
    reply = run(node, "blockchain get config")
    assert not reply.ok and "cannot read the ledger" in reply.text
    os.rmdir(path)
    assert ok(node, "blockchain get config").json_data() == []
