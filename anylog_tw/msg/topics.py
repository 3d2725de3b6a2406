"""MQTT topic filters: checking them, and finding the subscription a topic belongs to.

AnyLog tries an exact topic first, then its wildcard subscriptions; EdgeLake understands only a
trailing `#`, so a `+` subscription is sent to the broker but nothing it brings matches.  Here
both wildcards follow MQTT 3.1.1 §4.7 (matching itself is paho's `topic_matches_sub`), and a
topic's answer is remembered, so a stream on one topic costs one dictionary look-up a message.
"""

from __future__ import annotations

from typing import Generic, TypeVar

from anylog_tw.base.errors import OptionError

T = TypeVar("T")

MAX_CACHED = 10_000  # topics remembered (matched or not); a flood of new topics cannot grow it further


def check_filter(name: str) -> str:
    """A topic filter as MQTT allows it; OptionError names what is wrong."""
    if not name:
        raise OptionError("a topic name is empty")
    if "\x00" in name:
        raise OptionError(f"topic {name!r} contains a NUL character")
    if len(name.encode("utf-8")) > 65535:
        raise OptionError("a topic name is longer than MQTT's 65,535 bytes")
    levels = name.split("/")
    for i, level in enumerate(levels):
        if "#" in level and (level != "#" or i != len(levels) - 1):
            raise OptionError(f"topic {name!r}: '#' must be a whole level and the last one (e.g. 'plant/#')")
        if "+" in level and level != "+":
            raise OptionError(f"topic {name!r}: '+' must be a whole level (e.g. 'plant/+/temp')")
    return name


def is_wildcard(name: str) -> bool:
    return "#" in name or "+" in name


class TopicTable(Generic[T]):
    """Subscriptions by topic filter: exact names first, then wildcards, the most specific first."""

    def __init__(self) -> None:
        self.exact: dict[str, T] = {}
        self.wild: list[tuple[str, T]] = []
        self._cache: dict[str, T | None] = {}

    def add(self, name: str, value: T) -> None:
        if name in self:
            raise OptionError(f"topic {name!r} is subscribed already")
        if is_wildcard(name):
            self.wild.append((name, value))
            # The most specific filter answers first: a catch-all '#' only takes what nothing else does.
            self.wild.sort(key=lambda item: (item[0] == "#", -item[0].count("/"), "#" in item[0]))
        else:
            self.exact[name] = value
        self._cache.clear()

    def remove(self, name: str) -> None:
        self.exact.pop(name, None)
        self.wild = [(n, v) for n, v in self.wild if n != name]
        self._cache.clear()

    def __contains__(self, name: str) -> bool:
        return name in self.exact or any(n == name for n, _ in self.wild)

    def __len__(self) -> int:
        return len(self.exact) + len(self.wild)

    def find(self, topic: str) -> T | None:
        """The subscription a received topic belongs to, or None."""
        hit = self.exact.get(topic)
        if hit is not None:
            return hit
        try:
            return self._cache[topic]
        except KeyError:
            pass
        from paho.mqtt.client import topic_matches_sub  # paho loads when a wildcard is first used

        found = None
        for name, value in self.wild:
            # A topic starting with '$' (broker statistics) is not matched by a leading wildcard (§4.7.2).
            if topic.startswith("$") and name[0] in "#+":
                continue
            if topic_matches_sub(name, topic):
                found = value
                break
        if len(self._cache) >= MAX_CACHED:
            self._cache.clear()
        self._cache[topic] = found
        return found
