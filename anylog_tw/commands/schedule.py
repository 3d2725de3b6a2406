"""Scheduler commands: `run|exit scheduler`, `schedule ... task <command>`, `task ...`, `get scheduler`."""

from __future__ import annotations

from anylog_tw.base import grammar, values
from anylog_tw.base.errors import CommandError, GrammarError, NotFound, OptionError, ServiceError
from anylog_tw.base.grammar import EQ, Token
from anylog_tw.base.registry import FORMAT, Option, command, tokens_text
from anylog_tw.base.reply import Reply
from anylog_tw.base.timefmt import format_utc
from anylog_tw.services.scheduler import MIN_INTERVAL, Scheduler, Task, format_interval
from anylog_tw.services.scheduler_service import MAX_ID, SYSTEM, Schedulers, attach

SCHEDULE_USAGE = ('schedule time = <interval> [and name = "<name>" and start = <date> and scheduler = <id>] '
                  'task <command>')
SCHEDULE_OPTIONS = ("time", "name", "start", "scheduler")


def scheduler_id(text: str) -> int:
    try:
        sid = int(text)
    except (TypeError, ValueError):
        raise OptionError(f"scheduler id {text!r} is not a whole number (ids are 0 to {MAX_ID})") from None
    if not 0 <= sid <= MAX_ID:
        raise OptionError(f"scheduler id {sid} is out of range: ids are 0 (system) and 1 to {MAX_ID}")
    return sid


def split_schedule(tokens: tuple[Token, ...] | list[Token]) -> tuple[list[Token], int]:
    """Split `schedule`'s tokens at the word `task`: (option tokens, index of the command's first token).

    The `task` that ends the options is the first bare word `task` that is not itself an option's
    value (`name = task` names a task "task"); a leading `where` is allowed and skipped.
    """
    tokens = list(tokens)
    start = 1 if tokens and tokens[0].is_word("where") else 0
    for i in range(start, len(tokens)):
        tok = tokens[i]
        if tok.is_word("task") and not (i > 0 and tokens[i - 1].kind == EQ):
            if i + 1 >= len(tokens):
                raise GrammarError(f"nothing to run after 'task' (usage: {SCHEDULE_USAGE})")
            return tokens[start:i], i + 1
    raise GrammarError(f"'schedule' needs 'task <command>' at the end (usage: {SCHEDULE_USAGE})")


def read_schedule_options(option_tokens: list[Token], sub) -> dict[str, str]:
    """The options of `schedule` as text, checked for unknown, repeated and missing ones."""
    if not option_tokens:
        raise OptionError(f"'schedule' needs 'time = <interval>' (usage: {SCHEDULE_USAGE})")
    values: dict[str, str] = {}
    for key, value_tokens in grammar.parse_where(option_tokens):
        if key not in SCHEDULE_OPTIONS:
            raise OptionError(f"'schedule' has no option '{key}' (valid options: {', '.join(SCHEDULE_OPTIONS)})")
        if key in values:
            raise OptionError(f"option '{key}' is given twice")
        values[key] = tokens_text(value_tokens, sub)
    if "time" not in values:
        raise OptionError(f"'schedule' needs 'time = <interval>', e.g. 'time = 30 seconds' (usage: {SCHEDULE_USAGE})")
    return values


def schedulers(node) -> Schedulers:
    return node.component(Schedulers)


def _interval(text: str) -> float:
    try:
        seconds = values.parse_seconds(text)
    except GrammarError as e:
        raise OptionError(f"option 'time': {e}") from None
    if seconds < MIN_INTERVAL:
        raise OptionError(f"option 'time' is {text!r}: a task's interval must be at least {MIN_INTERVAL:g} seconds")
    return seconds


def _start(node, text: str | None) -> float | None:
    if text is None:
        return None
    try:
        return values.parse_date(text, node.reactor.seconds())
    except GrammarError as e:
        raise OptionError(f"option 'start': {e}") from None


def _not_running_note(sched: Scheduler) -> str:
    return "" if sched.running else f" (scheduler {sched.id} is not running: start it with 'run scheduler {sched.id}')"


SCHEDULE_TEXT = (
    "Run a command every <interval>, on a scheduler (default 1; start it with 'run scheduler'). The command is "
    "anything a user could type, including 'x = <command>' to keep its output in the dictionary; '!key' "
    "references in it are read at each run, and TIME(PREVIOUS) / TIME(CURRENT) become the previous and the "
    "current run times. Semantics: a task runs first at 'start' (a date, '+2h', 'start of day'; a start in the "
    "past runs at once) or one interval after it was declared, then every interval on that grid; slots missed "
    "while the node was busy are collapsed into one run. A task still running when it falls due again is not "
    "started twice (the slot is counted as skipped). A failing task is logged in the error log, counted, and "
    "keeps its schedule. Names are unique per scheduler. Adding, stopping, resuming or removing a task takes "
    "effect at once. Tasks live in memory: a script re-declares them at start-up."
)


@command("schedule", grant="write", usage=SCHEDULE_USAGE, text=SCHEDULE_TEXT,
         examples=('schedule time = 30 seconds and name = "status" task node_status = get status',
                   'schedule time = 1 day and start = "start of day" and name = "daily" task process !local_scripts/daily.al',
                   'schedule time = 1 hour and start = +2h and scheduler = 2 task get processes'),
         keywords=("scheduler", "background processes", "script"), raw=True)
def schedule(call):
    node = call.node
    option_tokens, first = split_schedule(call.tokens)
    values = read_schedule_options(option_tokens, call.substitute)
    sid = scheduler_id(values.get("scheduler", "1"))
    if sid == SYSTEM:
        raise CommandError("scheduler 0 holds the node's system tasks; schedule user tasks on scheduler 1 to "
                           f"{MAX_ID} (e.g. 'and scheduler = 1')")
    interval = _interval(values["time"])
    start = _start(node, values.get("start"))
    text = call.text[call.tokens[first].start:].strip()
    node.check_grant(text, call.origin, "scheduling")  # a task runs with its scheduler's grant: refuse now, not at each run
    sched = schedulers(node).scheduler(sid, create=True)
    name = values.get("name")
    try:
        task = sched.add(interval, command=text, name=name, start=start, owner=call.origin)
    except KeyError:
        raise CommandError(f"scheduler {sid} already has a task named '{name}': pick another name, or remove it "
                           f"first with 'task remove where scheduler = {sid} and name = {grammar.quote(name)}'") from None
    return (f"Task {task.id} '{task.name}' on scheduler {sid}: every {format_interval(interval)}, next run "
            f"{format_utc(task.next_run)} UTC{_not_running_note(sched)}")


# --- run / exit scheduler ----------------------------------------------------------------------


def _id_arg(call) -> int:
    return scheduler_id(call.args[0]) if call.args else 1


@command("run scheduler", grant="admin", usage="run scheduler [id]",
         text=f"Start a scheduler (default 1; ids 1 to {MAX_ID} hold user tasks). Scheduler 0 holds the node's system "
              "tasks and runs from start-up. Tasks may be declared before or after the scheduler starts.",
         examples=("run scheduler", "run scheduler 2"), keywords=("scheduler", "background processes"),
         nargs=(0, 1))
def run_scheduler(call):
    node = call.node
    sid = _id_arg(call)
    group = schedulers(node)
    sched = group.scheduler(sid)
    if sched is not None and sched.running:
        if sid == SYSTEM:
            raise ServiceError("scheduler 0 (system) is already running: it runs as long as the node does")
        raise ServiceError(f"scheduler {sid} is already running (stop it first with 'exit scheduler {sid}')")
    attach(node)
    sched = group.start(sid)
    return f"Scheduler {sid} started ({len(sched)} task{'s' if len(sched) != 1 else ''})"


@command("exit scheduler", grant="admin", usage="exit scheduler [id]",
         text="Stop a scheduler (default 1): its tasks stop running but are kept, and 'run scheduler' starts them "
              "again. A task run in flight finishes. Scheduler 0 (system) stops only with the node.",
         examples=("exit scheduler", "exit scheduler 2"), keywords=("scheduler", "background processes"),
         nargs=(0, 1))
def exit_scheduler(call):
    sid = _id_arg(call)
    if sid == SYSTEM:
        raise CommandError("scheduler 0 (system) stops only with the node; stop one of its tasks with "
                           "'task stop where scheduler = 0 and name = <name>'")
    group = schedulers(call.node)
    sched = group.scheduler(sid)
    if sched is None or not sched.running:
        raise ServiceError(f"scheduler {sid} is not running")
    inflight = sched.inflight
    group.stop(sid)
    more = f" ({inflight} task run{'s' if inflight != 1 else ''} finishing)" if inflight else ""
    return f"Scheduler {sid} stopped{more}"


# --- task stop | resume | remove | run | init --------------------------------------------------

TASK_OPTIONS = (Option("scheduler", kind="int", default=1, help=f"scheduler id, 0 to {MAX_ID}"),
                Option("name", help="the task's name"), Option("id", kind="int", help="the task's id"))
START = Option("start", kind="date", help="the next run: a date, +1d, 'start of day' (default: one interval from now)")


def find_task(call) -> tuple[Scheduler, Task]:
    sid = scheduler_id(str(call.opts["scheduler"]))
    name, task_id = call.opts["name"], call.opts["id"]
    action = call.command.name
    if name is None and task_id is None:
        raise OptionError(f"'{action}' needs the task: '{action} where scheduler = {sid} and name = <name>' "
                          f"or '... and id = <id>'")
    sched = schedulers(call.node).scheduler(sid)
    task = sched.find(name=name, task_id=task_id) if sched is not None else None
    if task is None:
        which = " and ".join(part for part in (f"name '{name}'" if name is not None else "",
                                               f"id {task_id}" if task_id is not None else "") if part)
        raise NotFound(f"scheduler {sid} has no task with {which} (see 'get scheduler {sid}')")
    return sched, task


@command("task stop", grant="write", usage="task stop where scheduler = <id> and name = <name>|id = <id>",
         text="Stop a task: it runs no more until 'task resume' (a run in flight finishes).",
         examples=("task stop where scheduler = 1 and name = status", "task stop where id = 3"),
         keywords=("scheduler",), options=TASK_OPTIONS)
def task_stop(call):
    sched, task = find_task(call)
    sched.stop_task(task)
    return f"Task {task.id} '{task.name}' on scheduler {sched.id} stopped"


@command("task resume", grant="write", usage="task resume where scheduler = <id> and name = <name>|id = <id>",
         text="Resume a stopped task: it runs at its planned time if that is still ahead, else at the next slot "
              "of its schedule.",
         examples=("task resume where scheduler = 1 and name = status",), keywords=("scheduler",),
         options=TASK_OPTIONS)
def task_resume(call):
    sched, task = find_task(call)
    sched.resume_task(task)
    return f"Task {task.id} '{task.name}' on scheduler {sched.id}: next run {format_utc(task.next_run)} UTC"


@command("task remove", grant="write", usage="task remove where scheduler = <id> and name = <name>|id = <id>",
         text="Remove a task from its scheduler (a run in flight finishes). System tasks (scheduler 0) can only be "
              "stopped.",
         examples=("task remove where scheduler = 1 and name = status",), keywords=("scheduler",),
         options=TASK_OPTIONS)
def task_remove(call):
    sched, task = find_task(call)
    if task.system:
        raise CommandError(f"'{task.name}' is a system task: stop it with 'task stop where scheduler = {sched.id} "
                           f"and name = {grammar.quote(task.name)}'")
    sched.remove_task(task)
    return f"Task {task.id} '{task.name}' removed from scheduler {sched.id}"


@command("task run", grant="write", usage="task run where scheduler = <id> and name = <name>|id = <id>",
         text="Run a task now, once, off its schedule (its next scheduled run does not move). Waits for the run "
              "and reports its result. A task that is running is not started twice.",
         examples=("task run where scheduler = 1 and name = status",), keywords=("scheduler",),
         options=TASK_OPTIONS)
async def task_run(call):
    sched, task = find_task(call)
    if task.running:
        raise CommandError(f"task '{task.name}' is running now; it is not started twice")
    ok = await sched.run_task_now(task)
    if not ok:
        raise CommandError(f"task '{task.name}' failed: {task.last_result}")
    return f"Task {task.id} '{task.name}' ran: ok"


@command("task init", grant="write", usage="task init where scheduler = <id> and name = <name>|id = <id> [and start = <date>]",
         text="Move a task's next run to 'start' (default: one interval from now); 'start = +1d' quiets an alert "
              "for a day. Its later runs follow from there.",
         examples=("task init where scheduler = 1 and name = alert and start = +1d",
                   'task init where name = daily and start = "2026-12-01 10:00:00"'),
         keywords=("scheduler",), options=TASK_OPTIONS + (START,))
def task_init(call):
    sched, task = find_task(call)
    sched.init_task(task, _start(call.node, call.opts["start"]))
    stopped = "" if task.active else " (stopped: 'task resume' makes it run)"
    return f"Task {task.id} '{task.name}' on scheduler {sched.id}: next run {format_utc(task.next_run)} UTC{stopped}"


# --- get scheduler ------------------------------------------------------------------------------

COLUMNS = ("Scheduler", "ID", "Name", "Status", "Interval", "Next Run", "Last Run", "Last Result", "Runs",
           "Failures", "Skipped", "Command")


def _summary(sched: Scheduler) -> str:
    kind = "system" if sched.id == SYSTEM else "user"
    n = len(sched)
    tasks = f"{n} task{'s' if n != 1 else ''}" if n else "no tasks"
    return f"Scheduler {sched.id} ({kind}): {'running' if sched.running else 'not running'}, {tasks}"


@command("get scheduler", grant="read", usage="get scheduler [id] [where format = json]",
         text="Show the tasks of one scheduler, or of all: id, name, status (active, running, stopped), interval, "
              "next run, last run, last result (ok or the error), runs, failures, skipped slots and command. "
              "Times are UTC.",
         examples=("get scheduler", "get scheduler 1", "get scheduler 0 where format = json"),
         keywords=("scheduler", "monitor"), options=(FORMAT,), nargs=(0, 1), readonly=True)
def get_scheduler(call):
    group = schedulers(call.node)
    if call.args:
        sid = scheduler_id(call.args[0])
        shown = [group.scheduler(sid) or Scheduler(sid, call.node.reactor, None)]
    else:
        shown = [s for s in group.all() if s.running or len(s)]
    rows, data = [], []
    for sched in shown:
        for task in sched.tasks():
            info = task.as_dict()
            data.append(info)
            rows.append((sched.id, task.id, task.name, task.status, format_interval(task.interval),
                         info["next_run"], info["last_run"], task.last_result, task.runs, task.failures,
                         task.skipped, task.what))
    title = "\n".join(_summary(s) for s in shown) or "No scheduler running"
    return Reply.of_table(COLUMNS, rows, title=title, data=data)


__all__ = ["split_schedule", "read_schedule_options", "scheduler_id"]
