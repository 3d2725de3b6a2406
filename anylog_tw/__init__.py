"""anylog-tw: a node of an AnyLog-style edge data network, built on Twisted."""

__version__ = "0.1.0"
