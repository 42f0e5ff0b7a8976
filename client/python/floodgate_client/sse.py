"""Server-Sent Events, parsed as the HTML standard says: ``id``, ``event``, ``data`` (joined
by newlines), ``retry``; comment lines (``:``, the edge's keep-alives) ignored; an event is
dispatched at a blank line. Used by client.py on a urllib response, line by line."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SseMessage:
    """One dispatched event."""

    id: str | None
    event: str
    data: str


class SseParser:
    """Feed it lines (bytes or str, with or without their line ending); it answers messages."""

    def __init__(self) -> None:
        self.last_id: str | None = None
        self.retry_ms: int | None = None
        self._event = ""
        self._data: list[str] = []
        self._has_data = False

    def feed(self, line: bytes | str) -> SseMessage | None:
        text = line.decode("utf-8") if isinstance(line, bytes) else line
        text = text.rstrip("\r\n")
        if text == "":
            return self._dispatch()
        if text.startswith(":"):
            return None
        field, sep, value = text.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        if field == "event":
            self._event = value
        elif field == "data":
            self._data.append(value)
            self._has_data = True
        elif field == "id":
            if "\0" not in value:
                self.last_id = value
        elif field == "retry":
            if value.isdigit():
                self.retry_ms = int(value)
        return None

    def _dispatch(self) -> SseMessage | None:
        if not self._has_data:
            self._event = ""
            return None
        message = SseMessage(id=self.last_id, event=self._event or "message", data="\n".join(self._data))
        self._event = ""
        self._data = []
        self._has_data = False
        return message
