"""The `twistd anylog` plugin: one line naming the tap module, so plugin scans stay cheap."""

from twisted.application.service import ServiceMaker

anylog = ServiceMaker(
    "anylog-tw node",
    "anylog_tw.tap",
    "A node of an AnyLog-style edge data network (operator, publisher, master, query).",
    "anylog",
)
