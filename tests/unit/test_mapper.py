"""ingest/mapper.py: every mapping example of anylog-spec §5.5 and anylog-mqtt-spec §3/§5/§12 as
rules, a message, and the rows expected."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from anylog_tw.base.ingest_errors import IngestError
from anylog_tw.ingest.mapper import BlobValue, compile_mapper
from anylog_tw.ingest.mapping import to_columns
from anylog_tw.ingest.mapping_rules import MappingError, rules_from_policy, rules_from_topic

NOW = "2026-12-01 08:00:00"


def mapper(rules):
    return compile_mapper(rules, now=lambda: NOW)


def topic(**options):
    """Topic options as `run msg client` gives them: key -> text (column.* keys use '.')."""
    return rules_from_topic([(k.replace("__", "."), v) for k, v in options.items()])


# --- anylog-mqtt-spec §12: the acceptance cases that map --------------------------------------------

CASE1_MESSAGE = {"value": 210, "ts": 1607959427550, "protocol": "modbus", "measurement": "temp02",
                 "metadata": {"company": "Anylog", "machine_name": "cutter 23", "serial_number": "1234567890"}}


def test_case1_bring_rules_with_literal_text_and_epoch_ms():
    """dbms and table from the message (literal '_' kept, name rule applied), epoch ms timestamp."""
    rules = topic(dbms="bring [metadata][company]", table="bring [metadata][machine_name] _ [metadata][serial_number]",
                  column__timestamp__timestamp="bring [ts]", column__value='(type=int and value="bring [value]")')
    assert mapper(rules)(CASE1_MESSAGE) == [
        ("anylog", "cutter_23_1234567890", {"timestamp": "2020-12-14 15:23:47.550000", "value": 210})]


def test_case5_the_type_in_the_column_key():
    rules = topic(dbms="bring [metadata][company]", table="bring [metadata][machine_name] _ [metadata][serial_number]",
                  column__timestamp__timestamp="bring [ts]", column__value__int="bring [value]")
    rows = [r for m in (CASE1_MESSAGE, dict(CASE1_MESSAGE, value="211")) for r in mapper(rules)(m)]
    assert [r[2]["value"] for r in rows] == [210, 211]


EDGEX = {"apiVersion": "v2", "id": "8a3c9d3a", "deviceName": "Random-Integer-Generator01",
         "profileName": "Random-Integer-Generator", "sourceName": "Int32", "origin": 1686087247849269800,
         "readings": [{"id": "1", "origin": 1686087247849269800, "deviceName": "Random-Integer-Generator01",
                       "resourceName": "Int32", "profileName": "Random-Integer-Generator", "valueType": "Int32",
                       "value": "-998060882"}]}


def test_case2_now_and_a_readings_list_with_a_float_from_text():
    rules = topic(dbms="my_dbms", table="rand_data", column__timestamp__timestamp="now",
                  column__value__float="bring [readings][][value]")
    assert mapper(rules)(EDGEX) == [("my_dbms", "rand_data", {"timestamp": NOW, "value": -998060882.0})]


def test_case4_table_per_message_and_rows_per_reading():
    rules = topic(dbms="test", table="bring [sourceName]", column__timestamp__timestamp="now",
                  column__value__float="bring [readings][][value]")
    rows = []
    for i in range(1, 5):
        msg = {"sourceName": f"LIGHTOUT{i}", "readings": [{"value": "1.5"}, {"value": 2}]}
        rows += mapper(rules)(msg)
    assert sorted({(d, t) for d, t, _ in rows}) == [("test", f"lightout{i}") for i in range(1, 5)]
    assert [r["value"] for _, _, r in rows[:2]] == [1.5, 2.0]


def test_case6_dbms_and_table_from_each_element_of_a_posted_list():
    rules = topic(dbms="bring [dbms]", table="bring [table]", column__timestamp__timestamp="bring [ts]",
                  column__value__float="bring [value]")
    body = [{"dbms": "dmci", "table": t, "value": 50, "ts": "2019-10-14T17:22:13.051101Z"}
            for t in ("fic11", "fic16", "ai_mv")]
    rows = [r for element in body for r in mapper(rules)(element)]
    assert [(d, t) for d, t, _ in rows] == [("dmci", "fic11"), ("dmci", "fic16"), ("dmci", "ai_mv")]
    assert rows[0][2] == {"timestamp": "2019-10-14 17:22:13.051101", "value": 50.0}


def test_case7_optional_column_is_left_out_and_a_missing_one_fails_naming_the_key():
    rules = topic(dbms="d", table="t", column__value__int="bring [value]",
                  column__info='(type=str and value="bring [info]" and optional=true)')
    assert mapper(rules)({"value": 1}) == [("d", "t", {"value": 1})]
    assert mapper(rules)({"value": 1, "info": "x"}) == [("d", "t", {"value": 1, "info": "x"})]
    with pytest.raises(MappingError, match=r"column 'value': bring \[value\] found nothing"):
        mapper(rules)({"info": "x"})


def test_case8_a_message_without_metadata_fails_naming_the_bring():
    rules = topic(dbms="bring [metadata][company]", table="t", column__v__int="bring [value]")
    with pytest.raises(MappingError, match=r"dbms bring 'bring \[metadata\]\[company\]' found nothing"):
        mapper(rules)({"value": 1})


def test_case11_mapping_policy_with_per_message_dbms_and_table():
    policy = {"mapping": {"id": "telegraf-mapping", "dbms": "bring [dbms]", "table": "bring [sensor]",
                          "schema": {"timestamp": {"type": "timestamp", "default": "now()", "bring": "[timestamp]"},
                                     "value": {"type": "float", "bring": "[value]"}}}}
    assert mapper(rules_from_policy(policy))({"dbms": "x", "sensor": "s1", "value": 1.5}) == [
        ("x", "s1", {"timestamp": NOW, "value": 1.5})]


def test_the_type_can_come_from_the_message_one_per_reading():
    rules = topic(dbms="d", table="t", column__value='(type = "bring [readings][][valueType]" and '
                                                      'value = "bring [readings][][value]")')
    msg = {"readings": [{"valueType": "Int32", "value": "7"}, {"valueType": "Float64", "value": "7.934139e+01"},
                        {"valueType": "Bool", "value": "true"}]}
    assert [r["value"] for _, _, r in mapper(rules)(msg)] == [7, 79.34139, True]


def test_now_columns_come_first():
    rules = topic(dbms="d", table="t", column__value__int="bring [v]", column__ts__timestamp="now")
    assert list(mapper(rules)({"v": 1})[0][2]) == ["ts", "value"]


def test_a_literal_column_value():
    rules = topic(dbms="d", table="t", column__site__str="plant 7", column__v__int="bring [v]")
    assert mapper(rules)({"v": 1})[0][2] == {"site": "plant 7", "v": 1}


# --- anylog-spec §5.5: the mapping policy ------------------------------------------------------------

SPEC_POLICY = {"mapping": {
    "id": "rnd_val", "condition": "if [device] == 'Random-Integer-Generator01'",
    "dbms": "EdgeX", "table": "rnd_val", "readings": "readings",
    "schema": {"timestamp": {"bring": "[created]", "type": "timestamp", "default": "now()"},
               "value": {"bring": "[value]", "type": "decimal", "condition": "if [name] == X"}}}}


def test_spec_policy_condition_readings_and_column_condition():
    m = mapper(rules_from_policy(SPEC_POLICY))
    msg = {"device": "Random-Integer-Generator01", "created": 1700000000123,
           "readings": [{"name": "X", "value": "12"}, {"name": "Y", "value": "13"},
                        {"name": "X", "value": "0.000000e+00", "created": "2026-11-28T10:00:00+02:00"}]}
    assert m(msg) == [("edgex", "rnd_val", {"timestamp": "2023-11-14 22:13:20.123000", "value": 12.0}),
                      ("edgex", "rnd_val", {"timestamp": "2023-11-14 22:13:20.123000", "value": None}),
                      ("edgex", "rnd_val", {"timestamp": "2026-11-28 08:00:00", "value": 0.0})]
    assert m(dict(msg, device="another")) == []
    assert m({"device": "Random-Integer-Generator01", "readings": [{"name": "X", "value": 1}]})[0][2]["timestamp"] \
        == NOW  # default now()


def test_a_key_with_spaces_and_parentheses_gives_the_value_not_the_default():
    """issue 18: AnyLog writes the key as ['PM 2.5 (ug/m3)']; it used to give the default."""
    policy = {"mapping": {"id": "air", "dbms": "city", "table": "air", "schema": {
        "pm25": {"type": "float", "bring": "['PM 2.5 (ug/m3)']", "default": -1},
        "station": {"type": "str", "bring": "[meta][station id]"},
        "created": {"type": "timestamp", "bring": "[created]"}}}}
    rows = mapper(rules_from_policy(policy))({"PM 2.5 (ug/m3)": "81.5", "meta": {"station id": "s 7"},
                                             "created": 1700000000123})
    assert rows == [("city", "air", {"pm25": 81.5, "station": "s 7", "created": "2023-11-14 22:13:20.123000"})]


def test_docs_nested_readings_with_a_root_column():
    """The mapping-policy page's complete nested-reading example (`root: true`)."""
    policy = {"mapping": {"id": "compressor_mapping", "dbms": "industrial", "table": "compressor_data",
                          "readings": "readings", "schema": {
                              "timestamp": {"type": "timestamp", "bring": "[time]", "default": "now()"},
                              "site": {"type": "varchar", "bring": "[site]", "root": True},
                              "asset": {"type": "varchar", "bring": "[asset]"},
                              "temperature": {"type": "float", "bring": "[temp]"}}}}
    msg = {"site": "Plant_A", "readings": [{"time": "2026-08-08T18:30:00Z", "asset": "compressor_1", "temp": 72.5},
                                           {"time": "2026-08-08T18:30:01Z", "asset": "compressor_2", "temp": 74.1,
                                            "site": "not this one"}]}
    assert [r for _, _, r in mapper(rules_from_policy(policy))(msg)] == [
        {"timestamp": "2026-08-08 18:30:00", "site": "Plant_A", "asset": "compressor_1", "temperature": 72.5},
        {"timestamp": "2026-08-08 18:30:01", "site": "Plant_A", "asset": "compressor_2", "temperature": 74.1}]


def test_docs_dynamic_routing_example():
    """The mapping-policy page's `sensor-policy`: one policy, four tables, a missing timestamp -> now()."""
    policy = {"mapping": {"id": "sensor-policy", "dbms": "bring [dbms]", "table": "bring [sensor]", "readings": "",
                          "schema": {"timestamp": {"type": "timestamp", "default": "now()", "bring": "[timestamp]"},
                                     "value": {"type": "float", "default": None, "bring": "[value]"}}}}
    msgs = [{"dbms": "smart_city", "sensor": "ping_sensor", "timestamp": "2026-07-27T10:00:00Z", "value": 12.4},
            {"dbms": "smart_city", "sensor": "humidity", "value": 60.5},
            {"dbms": "monitoring", "sensor": "cpu_temp", "timestamp": "2026-07-27T10:15:00Z", "value": 65.0},
            {"dbms": "smart_city", "sensor": "co2_level", "timestamp": "2026-07-27T09:55:00Z"}]
    m = mapper(rules_from_policy(policy))
    assert [x for msg in msgs for x in m(msg)] == [
        ("smart_city", "ping_sensor", {"timestamp": "2026-07-27 10:00:00", "value": 12.4}),
        ("smart_city", "humidity", {"timestamp": NOW, "value": 60.5}),
        ("monitoring", "cpu_temp", {"timestamp": "2026-07-27 10:15:00", "value": 65.0}),
        ("smart_city", "co2_level", {"timestamp": "2026-07-27 09:55:00", "value": None})]


def test_docs_edgex_policy_epoch_ns_and_apply():
    policy = {"mapping": {"id": "full-policy", "dbms": "edgex_data", "table": "bring [deviceName]",
                          "readings": "readings", "schema": {
                              "timestamp": {"type": "timestamp", "default": "now()", "bring": "[origin]",
                                            "apply": "epoch_to_datetime"},
                              "value": {"type": "float", "bring": "[value]"},
                              "units": {"type": "varchar", "bring": "[units]", "default": None},
                              "extra": {"type": "varchar", "bring": "[profile]", "apply": "json_dump"}}}}
    msg = dict(EDGEX, readings=[dict(EDGEX["readings"][0], value="7.934139e+01", units="°F")],
               profile={"a": [1, 2]})
    assert mapper(rules_from_policy(policy))(msg) == [
        ("edgex_data", "random_integer_generator01",
         {"timestamp": "2023-06-06 21:34:07.849269", "value": 79.34139, "units": "°F", "extra": '{"a":[1,2]}'})]


def test_blob_column_gives_the_decoded_bytes_named_by_their_md5():
    policy = {"mapping": {"id": "cam", "dbms": "video", "table": "frames", "schema": {
        "file": {"root": True, "blob": True, "bring": "[file_content]", "extension": "jpeg",
                 "apply": "base64decoding", "hash": "md5", "type": "varchar"},
        "camera": {"type": "str", "bring": "[camera]"}}}}
    [(_, _, row)] = mapper(rules_from_policy(policy))({"camera": "c1", "file_content": "aGVsbG8="})
    assert row["file"] == BlobValue(b"hello", "5d41402abc4b2a76b9719d911017c592.jpeg")
    with pytest.raises(MappingError, match="not base64"):
        mapper(rules_from_policy(policy))({"camera": "c1", "file_content": "***"})


@pytest.mark.parametrize("policy,message,match", [
    ({"dbms": "d", "table": "bring [t]"}, {"t": "PM 2.5 (x)", "v": 1}, "table 'PM 2.5 \\(x\\)' cannot be a name"),
    ({"dbms": "d", "table": "t"}, {"v": "abc"}, "line 9: column 'v' \\(integer\\) cannot hold 'abc'"),
    ({"dbms": "d", "table": "t", "readings": "r"}, {"v": 1}, "readings \\[r\\] is missing"),
    ({"dbms": "d", "table": "t", "readings": "r"}, {"r": 5}, "is int, not a list"),
])
def test_rows_that_cannot_be_made_name_the_row_and_the_reason(policy, message, match):
    rules = rules_from_policy({"mapping": {"id": "p", **policy, "schema": {"v": {"bring": "[v]", "type": "int"}}}})
    with pytest.raises(MappingError, match=match):
        mapper(rules)(message, 9)


@pytest.mark.parametrize("options,match", [
    ({"column.v.blob9": "bring [v]"}, "unknown"),
    ({"column.v": "(value = \"bring [v]\" and colour = red)"}, "unknown key 'colour'"),
    ({"column.v": "(type = int)"}, "needs value"),
    ({"dbms": "PM (2)", "column.v.int": "bring [v]"}, "cannot be a name"),
    ({"dbms": "d"}, "maps no column"),
    ({"column.row_id.int": "bring [v]"}, "system column"),
    ({"column.v.int": "bring [v", "dbms": "d"}, "no matching"),
    ({"column.v.int": "bring.table [v]", "dbms": "d"}, "formats a 'blockchain get' answer"),
])
def test_bad_topic_rules_are_clear_errors(options, match):
    with pytest.raises(MappingError, match=match):
        mapper(rules_from_topic(options))


# --- the column-wise path of files agrees with the object-by-object one ------------------------------

values = st.one_of(st.none(), st.integers(-10**6, 10**6), st.floats(-1e6, 1e6), st.text(max_size=6),
                   st.sampled_from(["81.5", "-3", "2026-01-01T00:00:00Z", "1700000000123", "true"]))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.dictionaries(st.sampled_from(["a", "B", "c d", "(x)"]), values, max_size=4), min_size=1,
                max_size=8),
       st.sampled_from(["int", "float", "timestamp", "str", "bool"]), st.booleans(), st.booleans())
def test_a_files_rows_are_the_same_mapped_in_bulk_or_one_by_one(objs, kind, default, optional):
    spec = {"type": kind, "bring": "[b]"}
    if default:
        spec["default"] = None
    policy = {"mapping": {"id": "p", "schema": {"x": {"type": "str", "bring": "['(x)']", "optional": True},
                                                "y": dict(spec, bring="[c d]", optional=optional),
                                                "z": {"type": "str", "bring": "[a]", "default": "z0"}}}}
    m = mapper(rules_from_policy(policy))
    lines = list(range(1, len(objs) + 1))
    types = {"x": "text", "y": m.types["y"], "z": "text"}

    def bulk():
        batch = m.batch(objs, lines, "d", "t")
        assert list(batch) == [("d", "t")]
        b = batch[("d", "t")]
        assert b.lines == lines
        return list(zip(*to_columns(b, types)))  # timestamp text is left to the insert's adapting

    try:
        one = [[r.get(c) for c in ("x", "y", "z")] for o, n in zip(objs, lines) for _, _, r in m(o, n, "d", "t")]
    except MappingError:
        with pytest.raises(IngestError, match=r"^line \d+: column '[xyz]'"):  # column by column: maybe another row
            bulk()
        return
    typed = lambda rows: [[(type(v), v) for v in r] for r in rows]  # noqa: E731 (1 == 1.0 == True otherwise)
    assert typed(bulk()) == typed(one)
