"""The scheduler, driven by a Clock: timing, overlap, failures, task control, commands, system tasks."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

from anylog_tw.base.errors import GrammarError
from anylog_tw.base.grammar import tokenize
from anylog_tw.commands.schedule import split_schedule
from anylog_tw.services.scheduler import Scheduler, expand_time_marks, format_interval, next_slot
from anylog_tw.services.scheduler_service import Schedulers
from tests.helpers import fired, run, unit_node


class Recorder:
    """A runner that records each start and lets the test finish runs when it likes."""

    def __init__(self, clock, hold: bool = False, fail: set[str] = frozenset()):
        self.clock = clock
        self.hold = hold
        self.fail = set(fail)
        self.starts: list[tuple[str, float]] = []
        self.pending: dict[str, Deferred] = {}
        self.violations: list[str] = []

    async def __call__(self, task, previous):
        if task.name in self.pending:
            self.violations.append(f"{task.name} started twice at once at {self.clock.seconds()}")
        self.starts.append((task.name, self.clock.seconds()))
        if self.hold:
            d = self.pending[task.name] = Deferred()
            try:
                await d
            finally:
                self.pending.pop(task.name, None)
        if task.name in self.fail:
            return False, f"{task.name} broke"
        return True, ""

    def finish(self, name: str) -> None:
        self.pending[name].callback(None)

    def times(self, name: str) -> list[float]:
        return [t for n, t in self.starts if n == name]


def make(hold=False, fail=()):
    clock = Clock()
    rec = Recorder(clock, hold, set(fail))
    sched = Scheduler(1, clock, rec)
    sched.start()
    return clock, rec, sched


def advance(clock, seconds, step=1.0):
    """Move a Clock forward in steps, as a reactor would fire timers on the way."""
    done = 0.0
    while done < seconds:
        clock.advance(min(step, seconds - done))
        done += step


# --- timing ---------------------------------------------------------------------------------------


def test_a_task_runs_first_one_interval_after_it_is_declared_then_every_interval():
    clock, rec, sched = make()
    sched.add(10, command="x", name="a")
    clock.advance(9.9)
    assert rec.starts == []
    clock.advance(0.1)
    assert rec.times("a") == [10]
    advance(clock, 30)
    assert rec.times("a") == [10, 20, 30, 40]


def test_a_task_with_a_start_runs_first_at_start_and_stays_on_its_grid():
    clock, rec, sched = make()
    clock.advance(100)
    sched.add(60, command="x", name="a", start=130)
    advance(clock, 200, step=5)
    assert rec.times("a") == [130, 190, 250]


def test_a_start_in_the_past_runs_at_once_then_follows_the_grid_from_start():
    clock, rec, sched = make()
    clock.advance(1000)
    sched.add(100, command="x", name="a", start=950)
    clock.advance(0)
    advance(clock, 60, step=5)
    assert rec.times("a") == [1000, 1050]


def test_only_one_timer_is_armed_whatever_the_number_of_tasks():
    clock, rec, sched = make()
    for i in range(500):
        sched.add(1 + i % 7, command="x", name=f"t{i}")
    assert len(clock.getDelayedCalls()) == 1
    assert clock.getDelayedCalls()[0].getTime() == 1
    advance(clock, 3)
    assert len(clock.getDelayedCalls()) == 1


def test_many_tasks_due_at_once_all_start_in_one_tick():
    clock, rec, sched = make()
    for i in range(1000):
        sched.add(5, command="x", name=f"t{i}")
    clock.advance(5)
    assert sched.ticks == 1 and len(rec.starts) == 1000


def test_missed_slots_are_collapsed_into_one_run():
    clock, rec, sched = make()
    sched.add(10, command="x", name="a")
    clock.advance(55)  # the reactor was blocked for 5 intervals: one late run, then back on the grid
    assert rec.times("a") == [55]
    advance(clock, 10)
    assert rec.times("a") == [55, 60]


@given(due=st.floats(0, 1e6), interval=st.floats(0.1, 1e5), late=st.floats(0, 1e7))
def test_next_slot_is_on_the_grid_and_after_now(due, interval, late):
    now = due + late
    nxt = next_slot(due, interval, now)
    assert nxt > now
    k = (nxt - due) / interval
    assert abs(k - round(k)) < 1e-6 * max(1.0, k) and round(k) >= 1
    assert nxt - interval <= now + 1e-6 * max(1.0, abs(now))


# --- overlap and failures -------------------------------------------------------------------------


def test_a_task_still_running_when_due_again_is_not_started_twice():
    clock, rec, sched = make(hold=True)
    task = sched.add(1, command="x", name="slow")
    advance(clock, 3.5)
    assert rec.times("slow") == [1] and task.skipped == 2 and task.status == "running"
    rec.finish("slow")
    assert task.status == "active" and task.last_result == "ok"
    clock.advance(0.5)
    assert rec.times("slow") == [1, 4]


@pytest.mark.allow_logged_errors
def test_a_failing_task_is_counted_and_keeps_its_schedule():
    clock, rec, sched = make(fail={"bad"})
    task = sched.add(2, command="x", name="bad")
    advance(clock, 6)
    assert rec.times("bad") == [2, 4, 6]
    assert (task.runs, task.failures, task.last_result) == (3, 3, "bad broke")
    assert task.next_run == 8


@pytest.mark.allow_logged_errors
def test_a_runner_that_raises_is_a_failure_and_the_schedule_goes_on():
    clock = Clock()

    async def boom(task, previous):
        raise RuntimeError("kaput")

    sched = Scheduler(1, clock, boom)
    sched.start()
    task = sched.add(1, command="x", name="boom")
    advance(clock, 3)
    assert task.failures == 3 and "kaput" in task.last_result and len(clock.getDelayedCalls()) == 1


# --- control ------------------------------------------------------------------------------------


def test_stop_resume_and_remove_take_effect_at_once():
    clock, rec, sched = make()
    task = sched.add(10, command="x", name="a")
    sched.stop_task(task)
    assert clock.getDelayedCalls() == []  # nothing left to wait for
    clock.advance(25)
    assert rec.starts == []
    sched.resume_task(task)  # planned 10 has passed: next slot of the grid is 30
    assert task.next_run == 30 and [c.getTime() for c in clock.getDelayedCalls()] == [30]
    clock.advance(5)
    assert rec.times("a") == [30]
    sched.remove_task(task)
    assert clock.getDelayedCalls() == [] and sched.find(name="a") is None
    advance(clock, 50)
    assert rec.times("a") == [30]


def test_adding_an_earlier_task_re_arms_the_one_timer_earlier():
    clock, rec, sched = make()
    sched.add(100, command="x", name="late")
    sched.add(5, command="x", name="early")
    assert [c.getTime() for c in clock.getDelayedCalls()] == [5]


def test_init_moves_the_next_run_and_run_now_does_not_touch_the_schedule():
    clock, rec, sched = make()
    task = sched.add(10, command="x", name="a")
    sched.init_task(task, start=86400)
    assert [c.getTime() for c in clock.getDelayedCalls()] == [86400]
    assert fired(sched.run_task_now(task)) is True
    assert rec.times("a") == [0] and task.next_run == 86400
    sched.init_task(task)
    assert task.next_run == 10


def test_names_are_unique_per_scheduler_case_insensitively():
    clock, rec, sched = make()
    sched.add(10, command="x", name="Alert")
    with pytest.raises(KeyError):
        sched.add(10, command="y", name="alert")
    assert sched.add(10, command="y").name == "task2"


def test_a_stopped_scheduler_runs_nothing_and_runs_overdue_tasks_once_when_started_again():
    clock, rec, sched = make()
    sched.add(10, command="x", name="a")
    fired(sched.stop())
    assert clock.getDelayedCalls() == []
    clock.advance(35)
    assert rec.starts == []
    sched.start()
    clock.advance(0)
    assert rec.times("a") == [35]
    advance(clock, 5)
    assert rec.times("a") == [35, 40]


def test_stop_waits_for_the_runs_in_flight():
    clock, rec, sched = make(hold=True)
    sched.add(1, command="x", name="a")
    clock.advance(1)
    d = sched.stop()
    assert not d.called
    rec.finish("a")
    assert d.called


def test_a_task_that_stops_a_later_task_of_the_same_tick_prevents_its_run():
    clock = Clock()
    started = []

    async def runner(task, previous):
        started.append(task.name)
        if task.name == "first":
            sched.stop_task(sched.find(name="second"))
        return True, ""

    sched = Scheduler(1, clock, runner)
    sched.start()
    sched.add(5, command="x", name="first")
    sched.add(5, command="x", name="second")
    clock.advance(5)
    assert started == ["first"]


def test_time_marks_become_the_previous_and_current_run_times():
    text = "sql d select * from t where ts >= 'TIME(PREVIOUS)' and ts < 'time(current)'"
    assert expand_time_marks(text, 0, 86400) == (
        "sql d select * from t where ts >= '1970-01-01 00:00:00' and ts < '1970-01-02 00:00:00'")
    assert expand_time_marks("get status", 0, 1) == "get status"


def test_intervals_are_shown_as_typed():
    assert [format_interval(s) for s in (1, 30, 60, 7200, 86400, 1.5)] == [
        "1 second", "30 seconds", "1 minute", "2 hours", "1 day", "1.5 seconds"]


# --- a state machine: whatever the user does, no task runs twice at once and no due task is left ---


class SchedulerMachine(RuleBasedStateMachine):
    """Random add/stop/resume/remove/run/finish/advance against one scheduler on a Clock."""

    def __init__(self):
        super().__init__()
        self.clock = Clock()
        self.rec = Recorder(self.clock, hold=True)
        self.active: set[str] = set()  # the model: names that may run
        self.sched = Scheduler(1, self.clock, self._runner)
        self.sched.start()
        self.n = 0

    async def _runner(self, task, previous):
        if task.name not in self.active:
            self.rec.violations.append(f"{task.name} ran while stopped or removed")
        return await self.rec(task, previous)

    def names(self):
        return sorted(t.name for t in self.sched.tasks())

    @rule(interval=st.sampled_from([0.5, 1, 2, 3, 7]), start=st.none() | st.floats(0, 20))
    def add(self, interval, start):
        self.n += 1
        name = f"t{self.n}"
        at = None if start is None else self.clock.seconds() + start - 5
        self.sched.add(interval, command="x", name=name, start=at)
        self.active.add(name)

    @precondition(lambda self: self.sched.tasks())
    @rule(data=st.data())
    def stop(self, data):
        task = data.draw(st.sampled_from(self.sched.tasks()))
        self.sched.stop_task(task)
        self.active.discard(task.name)

    @precondition(lambda self: self.sched.tasks())
    @rule(data=st.data())
    def resume(self, data):
        task = data.draw(st.sampled_from(self.sched.tasks()))
        self.sched.resume_task(task)
        self.active.add(task.name)

    @precondition(lambda self: self.sched.tasks())
    @rule(data=st.data())
    def remove(self, data):
        task = data.draw(st.sampled_from(self.sched.tasks()))
        self.sched.remove_task(task)
        self.active.discard(task.name)

    @precondition(lambda self: self.rec.pending)
    @rule(data=st.data())
    def finish(self, data):
        self.rec.finish(data.draw(st.sampled_from(sorted(self.rec.pending))))

    @precondition(lambda self: self.sched.tasks())
    @rule(data=st.data(), offset=st.none() | st.floats(-10, 10))
    def init(self, data, offset):
        task = data.draw(st.sampled_from(self.sched.tasks()))
        self.sched.init_task(task, None if offset is None else self.clock.seconds() + offset)

    @precondition(lambda self: [t for t in self.sched.tasks() if not t.running])
    @rule(data=st.data())
    def run_now(self, data):
        task = data.draw(st.sampled_from([t for t in self.sched.tasks() if not t.running]))
        if task.active:  # the model only lets active tasks run; a stopped one may be run by hand
            self.sched.run_task_now(task)

    @rule()
    def stop_and_start_the_scheduler(self):
        self.sched.stop()
        assert [c for c in self.clock.getDelayedCalls() if c.active()] == []
        self.sched.start()

    @rule(seconds=st.sampled_from([0, 0.25, 0.5, 1, 2.5, 10]))
    def advance(self, seconds):
        self.clock.advance(seconds)
        now = self.clock.seconds()
        for task in self.sched.tasks():  # every due task was started (or skipped while running)
            if task.active:
                assert task.next_run > now, f"{task} is due at {task.next_run} but now is {now}"

    @invariant()
    def exactly_one_timer_for_the_earliest_active_task(self):
        calls = [c for c in self.clock.getDelayedCalls() if c.active()]
        due = [t.next_run for t in self.sched.tasks() if t.active]
        now = self.clock.seconds()
        if due:
            assert len(calls) == 1
            if min(due) > now:
                assert calls[0].getTime() == min(due)
            else:  # due now (a start in the past): the timer fires on the reactor's next turn
                assert calls[0].getTime() <= now
        else:
            assert calls == []

    @invariant()
    def no_task_ran_twice_at_once_or_while_stopped(self):
        assert self.rec.violations == []

    @invariant()
    def running_flags_match_the_runs_in_flight(self):
        assert {t.name for t in self.sched.tasks() if t.running} <= set(self.rec.pending)


TestSchedulerMachine = SchedulerMachine.TestCase
TestSchedulerMachine.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)


# --- the `schedule` grammar -------------------------------------------------------------------------


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="()[]{}\"'\\"),
               min_size=1).filter(lambda s: s.strip()))
def test_the_task_command_is_kept_exactly_as_typed(cmd):
    line = f'time = 1 minute and name = "n" task {cmd.strip()}'
    try:
        tokens = tokenize(line)
    except GrammarError:
        return
    options, first = split_schedule(tokens)
    assert line[tokens[first].start:] == cmd.strip()
    assert [t.value for t in options][:3] == ["time", "=", "1"]


def test_a_task_named_task_is_not_the_separator():
    tokens = tokenize("time = 1 minute and name = task task get status")
    options, first = split_schedule(tokens)
    assert tokens[first].value == "get" and options[-1].value == "task"


def test_schedule_without_task_is_a_clear_error():
    with pytest.raises(GrammarError, match="needs 'task <command>'"):
        split_schedule(tokenize("time = 1 minute get status"))
    with pytest.raises(GrammarError, match="nothing to run"):
        split_schedule(tokenize("time = 1 minute task"))


# --- the commands, on a node with a memory reactor -------------------------------------------------


@pytest.fixture
def node(tmp_path):
    node = unit_node(tmp_path)
    node.startService()
    yield node
    fired(node.stopService())


def test_a_scheduled_assignment_writes_the_dictionary_every_interval(node):
    assert run(node, "run scheduler").ok
    reply = run(node, 'schedule time = 2 seconds and name = "me" task me = get node name')
    assert reply.ok and "Task 1 'me' on scheduler 1: every 2 seconds" in reply.text
    node.reactor.advance(1.9)
    assert "me" not in node.dictionary
    node.reactor.advance(0.1)
    assert node.dictionary["me"] == "anylog-node"
    node.set_name("renamed")
    node.reactor.advance(2)
    assert node.dictionary["me"] == "renamed"
    origins = [e[2] for e in node.events.entries()]
    assert "scheduler 1 task me" in origins


def test_dictionary_references_in_a_task_are_read_at_each_run(node):
    run(node, "run scheduler")
    run(node, "src = one")
    run(node, "schedule time = 1 second and name = copy task dst = !src")
    node.reactor.advance(1)
    assert node.dictionary["dst"] == "one"
    run(node, "src = two")
    node.reactor.advance(1)
    assert node.dictionary["dst"] == "two"


def test_get_scheduler_shows_counters_and_errors_text_and_json(node):
    run(node, "run scheduler")
    run(node, "schedule time = 1 second and name = ok task get status")
    run(node, "schedule time = 1 second and name = broken task no such command")
    for _ in range(3):
        node.reactor.advance(1)
    reply = run(node, "get scheduler 1")
    assert reply.title.startswith("Scheduler 1 (user): running, 2 tasks")
    rows = {row[2]: dict(zip(reply.columns, row)) for row in reply.rows}
    assert rows["ok"]["Runs"] == 3 and rows["ok"]["Failures"] == 0 and rows["ok"]["Last Result"] == "ok"
    assert rows["broken"]["Failures"] == 3 and "unknown command 'no such command'" in rows["broken"]["Last Result"]
    assert rows["ok"]["Next Run"] == "1970-01-01 00:00:04" and rows["ok"]["Interval"] == "1 second"
    data = json.loads(run(node, "get scheduler 1 where format = json").render())
    assert [(t["name"], t["runs"], t["failures"]) for t in data] == [("ok", 3, 0), ("broken", 3, 3)]
    assert any("no such command" in e[4] for e in node.errors.entries())


def test_start_option_and_task_init_and_run(node):
    run(node, "run scheduler")
    node.reactor.advance(3600 * 5 + 17)  # 05:00:17
    run(node, 'schedule time = 1 day and start = "start of day" and name = daily task d = get node name')
    node.reactor.advance(0)
    assert node.dictionary["d"] == "anylog-node"  # start of day has passed: ran at once
    assert "1970-01-02 00:00:00" in run(node, "get scheduler 1").render()
    reply = run(node, "task init where name = daily and start = +2h")
    assert reply.ok and "07:00:17" in reply.text
    del node.dictionary["d"]
    assert run(node, "task run where scheduler = 1 and name = daily").text == "Task 1 'daily' ran: ok"
    assert node.dictionary["d"] == "anylog-node"


def test_task_stop_resume_remove_through_commands(node):
    run(node, "run scheduler")
    run(node, "schedule time = 1 second and name = beat task n = get node name")
    assert run(node, "task stop where name = beat").ok
    node.reactor.advance(3)
    assert "n" not in node.dictionary
    assert "stopped" in run(node, "get scheduler 1").render()
    assert run(node, "task resume where id = 1").ok
    node.reactor.advance(1)
    assert node.dictionary["n"] == "anylog-node"
    assert run(node, "task remove where scheduler = 1 and name = beat and id = 1").ok
    assert run(node, "get scheduler 1").rows == []


@pytest.mark.parametrize("text, message", [
    ("schedule name = x task get status", "needs 'time = <interval>'"),
    ("schedule time = soon task get status", "option 'time'"),
    ("schedule time = 0 seconds task get status", "at least 0.1 seconds"),
    ("schedule time = 1 minute and start = tomorrow task get status", "option 'start'"),
    ("schedule time = 1 minute and colour = red task get status", "no option 'colour'"),
    ("schedule time = 1 minute and scheduler = 0 task get status", "scheduler 0 holds the node's system tasks"),
    ("schedule time = 1 minute and scheduler = 11 task get status", "out of range"),
    ("schedule time = 1 minute get status", "needs 'task <command>'"),
    ("task stop where scheduler = 1", "needs the task"),
    ("task stop where name = ghost", "no task with name 'ghost'"),
    ("task remove where scheduler = 1 and id = 7", "no task with id 7"),
    ("exit scheduler 0", "stops only with the node"),
    ("exit scheduler 3", "scheduler 3 is not running"),
    ("run scheduler 0", "already running"),
    ("run scheduler x", "not a whole number"),
])
def test_bad_input_gets_a_clear_error(node, text, message):
    reply = run(node, text)
    assert not reply.ok and message in reply.text, reply.text


def test_reusing_a_name_is_an_error_that_says_what_to_do(node):
    run(node, 'schedule time = 1 minute and name = "alert" task get status')
    reply = run(node, 'schedule time = 5 minutes and name = "alert" task get processes')
    assert not reply.ok and "already has a task named 'alert'" in reply.text and "task remove" in reply.text
    assert run(node, 'schedule time = 1 minute and name = "alert" and scheduler = 2 task get status').ok


def test_run_and_exit_scheduler_and_the_processes_row(node):
    details = dict((r[0], r[2]) for r in run(node, "get processes").rows)
    assert details["Scheduler"] == "Schedulers IDs in use: [0 (system)]"
    run(node, "schedule time = 1 second and name = a task a = get node name")
    node.reactor.advance(2)
    assert "a" not in node.dictionary  # declared on a scheduler that is not running yet
    assert run(node, "run scheduler").text == "Scheduler 1 started (1 task)"
    assert not run(node, "run scheduler 1").ok
    details = dict((r[0], r[2]) for r in run(node, "get processes").rows)
    assert details["Scheduler"] == "Schedulers IDs in use: [0 (system)] [1 (user)]"
    node.reactor.advance(0)
    assert node.dictionary["a"] == "anylog-node"
    assert run(node, "exit scheduler 1").text == "Scheduler 1 stopped"
    del node.dictionary["a"]
    node.reactor.advance(5)
    assert "a" not in node.dictionary


@pytest.mark.allow_logged_errors
def test_system_tasks_run_on_scheduler_0_and_can_be_stopped_but_not_removed(node):
    calls = []

    async def ping():
        calls.append(node.reactor.seconds())

    def broken():
        raise ValueError("no peers table")

    group = node.component(Schedulers)
    group.add_system_task("metadata ping", 60, ping)
    group.add_system_task("broken", 30, broken)
    group.add_system_task("archive clean", 86400, "clean = get node name")
    advance(node.reactor, 60, step=30)
    assert calls == [60]
    reply = run(node, "get scheduler 0")
    rows = {row[2]: dict(zip(reply.columns, row)) for row in reply.rows}
    assert rows["metadata ping"]["Command"].endswith("ping>") and rows["metadata ping"]["Runs"] == 1
    assert rows["broken"]["Failures"] == 2 and "ValueError: no peers table" in rows["broken"]["Last Result"]
    assert not run(node, "task remove where scheduler = 0 and name = broken").ok
    assert run(node, "task stop where scheduler = 0 and name = broken").ok
    assert run(node, "task run where scheduler = 0 and name = archive clean").ok
    assert node.dictionary["clean"] == "anylog-node"
    group.add_system_task("metadata ping", 10, ping)  # replaced, not duplicated
    assert [t.interval for t in group.scheduler(0).tasks() if t.name == "metadata ping"] == [10]
    assert group.remove_system_task("metadata ping") and not group.remove_system_task("metadata ping")


def test_stopping_the_node_stops_every_scheduler(node):
    run(node, "run scheduler 2")
    run(node, "schedule time = 1 second and scheduler = 2 task get status")
    assert node.reactor.getDelayedCalls()
    fired(node.stopService())
    assert [c for c in node.reactor.getDelayedCalls() if c.active()] == []
    node.startService()  # the fixture stops it again


def test_the_node_waits_for_a_task_run_in_flight_when_it_stops_but_not_forever(node):
    hung = Deferred()
    group = node.component(Schedulers)
    group.add_system_task("hung", 1, lambda: hung)
    node.reactor.advance(1)
    assert group.scheduler(0).inflight == 1
    d = node.stopService()
    assert not d.called
    node.reactor.advance(9.9)
    assert not d.called
    node.reactor.advance(0.1)  # STOP_WAIT: the node stops anyway
    assert d.called and [c for c in node.reactor.getDelayedCalls() if c.active()] == []
    hung.callback(None)
    node.startService()  # the fixture stops it again


def test_a_run_in_flight_that_ends_lets_the_node_stop_at_once(node):
    slow = Deferred()
    group = node.component(Schedulers)
    group.add_system_task("slow", 1, lambda: slow)
    node.reactor.advance(1)
    d = node.stopService()
    assert not d.called
    slow.callback(None)
    assert d.called and [c for c in node.reactor.getDelayedCalls() if c.active()] == []
    node.startService()


def test_a_scheduled_command_reads_time_previous_and_current(node):
    run(node, "run scheduler")
    run(node, "schedule time = 10 seconds and name = window task window = echo from TIME(PREVIOUS) to TIME(CURRENT)")
    node.reactor.advance(10)
    assert node.dictionary["window"] == "from 1970-01-01 00:00:00 to 1970-01-01 00:00:10"
    node.reactor.advance(10)
    assert node.dictionary["window"] == "from 1970-01-01 00:00:10 to 1970-01-01 00:00:20"
