"""A WHATWG event-stream parser (HTML §9.2.6), used by the tests to read the proxy as a browser would."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_LINE = re.compile(r"\r\n|\r|\n")


@dataclass
class Event:
    data: str
    type: str = "message"
    id: str = ""


@dataclass
class Parsed:
    events: list[Event] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)
    leftover: str = ""  # an unterminated final event, which a browser discards


def parse_stream(raw: bytes) -> Parsed:
    text = raw.decode("utf-8", errors="replace").removeprefix("\ufeff")
    parsed = Parsed()
    data: list[str] = []
    event_type, last_id = "", ""
    lines = _LINE.split(text)
    complete, parsed.leftover = lines[:-1], lines[-1]
    for line in complete:
        if line == "":
            if data:
                parsed.events.append(Event("\n".join(data), event_type or "message", last_id))
            data, event_type = [], ""
        elif line.startswith(":"):
            parsed.comments.append(line[1:])
        else:
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "data":
                data.append(value)
            elif name == "event":
                event_type = value
            elif name == "id" and "\0" not in value:
                last_id = value
    if data:
        parsed.leftover = "\n".join(data) + parsed.leftover
    return parsed
