"""Local file commands: `file copy|move|delete|test|hash|compress|decompress`, `get files`,
`get directories`, `get archived files` and `get json file struct`.

The work is in `anylog_tw.ingest.fileops`, run in the reactor's thread pool; this module only reads the
call and decides which paths the caller may touch (`path_check`): only the node's owner (its
prompt and startup scripts) may use any path; every other caller is confined to the node's home
and work directories, so neither a peer, a REST user nor the console can read or overwrite any
file the process can.
"""

from __future__ import annotations

from anylog_tw.base import layout
from anylog_tw.base.errors import CommandError
from anylog_tw.base.registry import FORMAT, Option, command
from anylog_tw.base.reply import Reply
from anylog_tw.ingest import fileops

KEYWORDS = ("file",)
PEER_NOTE = ("Only the node's owner (its prompt or startup script) may name paths outside the node's home and "
             "work directories (get dictionary _dir); for every other caller such a path is refused.")
OVERWRITE = Option("overwrite", kind="bool", default=False,
                   help="replace an existing destination (default: refuse, so no file is lost by a typo)")


def work_roots(node) -> list[str]:
    """The directories a non-owner's paths may use: the home and the work directories as the node
    fixed them (`node.dirs`: a later dictionary change cannot widen this)."""
    roots = [node.home]
    roots += [node.dirs[key] for key in layout.DIRECTORIES if node.dirs.get(key)]
    return roots


def path_check(call):
    """How the paths of this call are read (`fileops.path_checker`: confined for all but the owner)."""
    return fileops.path_checker(call.origin, work_roots(call.node))


def confine_options(call, *names: str) -> None:
    """The directory options of a `run ...` command (watch_dir = ..) under the same rule, checked
    before the process starts."""
    check = path_check(call)
    for name in names:
        if call.opts.get(name):
            call.opts[name] = check(call.opts[name])


# --- file ... --------------------------------------------------------------------------------


@command("file copy", grant="admin", usage="file copy <source file> <destination file or directory> [where overwrite = true]",
         text="Copy a file on this node. A destination directory (an existing one, or a path ending with '/') "
              "keeps the file's name. The copy is written to a hidden temporary name and renamed when complete, "
              "so a failure leaves no partial file; an existing destination is kept unless overwrite = true. "
              "To copy to another node use 'file send'. " + PEER_NOTE,
         examples=("file copy !err_dir/data.json !prep_dir/data.json", "file copy !prep_dir/data.json !watch_dir/",
                   "file copy /tmp/a.json !prep_dir/a.json where overwrite = true"),
         keywords=KEYWORDS, nargs=(2, 2), options=(OVERWRITE,))
async def file_copy(call):
    check = path_check(call)
    src, dest = call.args

    def work():
        return fileops.copy_file(check(src), check(dest), call.opts["overwrite"])

    return f"Copied {src} to {await call.node.in_thread(work)}"


@command("file move", grant="admin", usage="file move <source file> <destination file or directory> [where overwrite = true]",
         text="Move a file on this node: a rename on the same file system, else a complete copy (temporary name, "
              "then rename) followed by the removal of the source. A destination directory keeps the file's name; "
              "an existing destination is kept unless overwrite = true. " + PEER_NOTE,
         examples=("file move !prep_dir/my_file.json !watch_dir", "file move !err_dir/a.json !prep_dir/b.json"),
         keywords=KEYWORDS, nargs=(2, 2), options=(OVERWRITE,))
async def file_move(call):
    check = path_check(call)
    src, dest = call.args

    def work():
        return fileops.move_file(check(src), check(dest), call.opts["overwrite"])

    return f"Moved {src} to {await call.node.in_thread(work)}"


@command("file delete", grant="admin", usage="file delete <file>",
         text="Delete one file (not a directory). A file that does not exist is an error. " + PEER_NOTE,
         examples=("file delete !prep_dir/my_file.json",), keywords=KEYWORDS, nargs=(1, 1))
async def file_delete(call):
    check = path_check(call)
    path = call.args[0]
    await call.node.in_thread(lambda: fileops.delete_file(check(path)))
    return f"Deleted {path}"


@command("file test", grant="read", usage="file test <file>",
         text="Answer True when the file exists (a regular file, not a directory), else False. " + PEER_NOTE,
         examples=("file test !prep_dir/my_file.json", "found = file test !blockchain_file"),
         keywords=KEYWORDS, nargs=(1, 1), readonly=True)
async def file_test(call):
    check = path_check(call)
    path = call.args[0]
    exists = await call.node.in_thread(lambda: fileops.file_exists(check(path)))
    return "True" if exists else "False"


@command("file hash", grant="read", usage="file hash <file> [where dbms = <dbms> and table = <table>]",
         text="Print the hash the operator gives the file, its key in tsd_info: the md5 (32 hex digits) of "
              "'dbms.table' followed by the file's data, uncompressed for a .gz file. dbms and table come from "
              "the file's name (dbms.table[...].json); give them for a file named otherwise. " + PEER_NOTE,
         examples=("file hash !prep_dir/lsl_demo.ping_sensor.json",
                   "file hash /tmp/readings.txt where dbms = lsl_demo and table = ping_sensor"),
         keywords=KEYWORDS + ("high availability",), nargs=(1, 1), readonly=True,
         options=(Option("dbms", help="the dbms, when the name does not give it"),
                  Option("table", help="the table, when the name does not give it")))
async def file_hash(call):
    check = path_check(call)
    path = call.args[0]
    dbms, table = call.opts["dbms"], call.opts["table"]
    if (dbms is None) != (table is None):
        raise CommandError("file hash: give both dbms and table, or neither (then the file's name gives them)")
    return await call.node.in_thread(lambda: fileops.hash_file(check(path), dbms, table))


def _gzip_command(name: str, action: str, work):
    async def handler(call):
        check = path_check(call)
        src = call.args[0]
        dest = call.args[1] if len(call.args) > 1 else None

        def run():
            return work(check(src), check(dest) if dest else None, call.opts["overwrite"])

        return f"{action} {src} to {await call.node.in_thread(run)}"

    handler.__name__ = name.replace(" ", "_")
    return handler


command("file compress", grant="admin", usage="file compress <file> [<destination file or directory>] [where overwrite = true]",
        text="gzip a file; without a destination the result is <file>.gz beside it. The source file stays. The "
             "result is written to a hidden temporary name and renamed when complete. " + PEER_NOTE,
        examples=("file compress !prep_dir/readings.json", "file compress !prep_dir/readings.json !bkup_dir/"),
        keywords=KEYWORDS, nargs=(1, 2), options=(OVERWRITE,))(
    _gzip_command("file compress", "Compressed", fileops.compress_file))

command("file decompress", grant="admin",
        usage="file decompress <file.gz> [<destination file or directory>] [where overwrite = true]",
        text="Unpack a gzip file; without a destination the result is the name without .gz beside it (a name "
             "without .gz gets .dat added). The source stays. A file that is not gzip, or is cut short, is "
             "refused and nothing is written. " + PEER_NOTE,
        examples=("file decompress !bkup_dir/readings.json.gz", "file decompress !archive_dir/26/11/28/a.json.gz /tmp/"),
        keywords=KEYWORDS, nargs=(1, 2), options=(OVERWRITE,))(
    _gzip_command("file decompress", "Decompressed", fileops.decompress_file))


# --- listings --------------------------------------------------------------------------------

FILE_COLUMNS = ("File", "Size", "Modified UTC")


@command("get files", grant="read", usage="get files <directory> [where format = json]",
         text="List the files of a directory on this node: name, size in bytes and modification time (UTC). "
              + PEER_NOTE,
         examples=("get files !err_dir", "get files !watch_dir where format = json"),
         keywords=KEYWORDS + ("monitor",), nargs=(1, 1), options=(FORMAT,), readonly=True)
async def get_files(call):
    check = path_check(call)
    path = call.args[0]
    rows = await call.node.in_thread(lambda: fileops.list_files(check(path)))
    return Reply.of_table(FILE_COLUMNS, rows, title=f"Files in {path}")


@command("get directories", grant="read", usage="get directories <directory> [where format = json]",
         text="List the subdirectories of a directory on this node, with their modification time (UTC). "
              + PEER_NOTE,
         examples=("get directories !archive_dir", "get directories !anylog_path where format = json"),
         keywords=KEYWORDS + ("monitor",), nargs=(1, 1), options=(FORMAT,), readonly=True)
async def get_directories(call):
    check = path_check(call)
    path = call.args[0]
    rows = await call.node.in_thread(lambda: fileops.list_directories(check(path)))
    return Reply.of_table(("Directory", "Modified UTC"), rows, title=f"Directories in {path}")


def archive_dir(node) -> str:
    """The running operator's archive (it may have been given its own), else the dictionary's."""
    op = node.process("Operator")
    configured = getattr(getattr(op, "config", None), "archive_dir", None)
    return configured or node.dirs["archive_dir"]


@command("get archived files", grant="read", usage="get archived files <YYYY-MM-DD> [where format = json]",
         text="List the files the operator archived on a day (UTC): the folder archive_dir/YY/MM/DD. A day "
              "with nothing archived is an empty list.",
         examples=("get archived files 2026-11-28", "get archived files 2026-11-28 where format = json"),
         keywords=KEYWORDS + ("archive", "high availability"), nargs=(1, 1), options=(FORMAT,), readonly=True)
async def get_archived_files(call):
    day = fileops.parse_day(call.args[0])
    folder, rows = await call.node.in_thread(fileops.archived_files, archive_dir(call.node), day)
    return Reply.of_table(FILE_COLUMNS, rows, title=f"Archived on {day.isoformat()} ({folder})")


# --- the naming convention ---------------------------------------------------------------------

FILE_STRUCT = """\
[dbms name].[table name].[data source].[hash value].[mapping policy].[TSD member ID].[TSD row ID].[TSD date].json[.gz]

  dbms name       the logical database (required)
  table name      the table (required)
  data source     the device or source that made the data (0: unknown)
  hash value      md5 of "dbms.table" and the data, see 'file hash' (0: computed on ingest)
  mapping policy  the id of the mapping policy for the rows (0: columns named after the attributes)
  TSD member ID   the cluster member that registered the file (@: rows inserted by the streamer)
  TSD row ID      the file's row (file_id) in that member's TSD table (tsd_info on the member itself)
  TSD date        YYMMDDHHMMSS, UTC, when it was registered; archived under archive_dir/YY/MM/DD

Devices send the short form, 2 to 5 segments before the type; the operator renames the file to
the 8-segment form once it has its TSD row. Names with 6 or 7 segments are refused.

Examples:
  lsl_demo.ping_sensor.json
  lsl_demo.ping_sensor.0.c490e6000d9487962d890a7cba2e1e74.0.json
  lsl_demo.ping_sensor.0.c490e6000d9487962d890a7cba2e1e74.0.1.42.261128050000.json
    (registered by member 1 as row 42 at 2026-11-28 05:00:00 UTC, archived in archive_dir/26/11/28)"""

EXAMPLE_NAMES = tuple(line.strip() for line in FILE_STRUCT.split("Examples:\n", 1)[1].splitlines()
                      if line.strip().endswith(".json"))


def _file_struct(call):
    return FILE_STRUCT


for _name in ("get json file struct", "get json file structure", "show json file structure"):
    command(_name, grant="read", usage=_name,
            text="Show the naming convention of data files (what each dot-separated segment means), with examples. "
                 "'get json file struct', 'get json file structure' and 'show json file structure' (spellings "
                 "seen in AnyLog's documentation) are the same command.",
            examples=(_name,), keywords=KEYWORDS + ("ingest",), readonly=True)(_file_struct)
