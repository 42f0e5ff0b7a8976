"""Input files: an image or a video uploaded (``POST /v1/files``, its parts, then complete) for
jobs to name by id, read, listed and deleted; and what a submit does with a :class:`LocalFile`
input value (uploaded first, sent as its file id). Used by client.py as ``Client.files``.

An upload reads the file once, part by part, hashing it as it goes: the edge checks the SHA-256
computed here when the upload completes, so bytes changed on the way are refused
(``invalid_upload``). It is resumable: ``upload(path, resume=file_id)`` asks which parts the
edge has stored and sends only the others.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import urllib.parse
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Union

from .errors import FloodgateError, MalformedAnswerError

if TYPE_CHECKING:
    from .client import Client

#: Media types by file extension, for the types an input file may have (the same table as the
#: TypeScript SDK's client/files.ts); the edge refuses other types (``unsupported_media_type``).
EXTENSIONS = {
    "png": "image/png",
    "jpg": "image/jpeg",
    "jpeg": "image/jpeg",
    "webp": "image/webp",
    "gif": "image/gif",
    "mp4": "video/mp4",
    "m4v": "video/mp4",
    "mov": "video/quicktime",
    "webm": "video/webm",
}


def content_type_of(name: str) -> str | None:
    """The media type of a file name by its extension, if it is one an input may have."""
    _, dot, ext = name.rpartition(".")
    return EXTENSIONS.get(ext.lower()) if dot else None


class LocalFile:
    """A file on the local disk, as an input value: a submit uploads it first and sends its
    file id in its place.

    Example::

        fg.run("demo", {"prompt": "make it snow", "video": LocalFile("clip.mp4")})
    """

    def __init__(self, path: str | os.PathLike[str], content_type: str | None = None) -> None:
        self.path = os.fspath(path)
        self.content_type = content_type

    def __repr__(self) -> str:
        return f"LocalFile({self.path!r})"


@dataclass(frozen=True)
class UploadProgress:
    """Where an upload stands: ``sent`` of ``total`` bytes of ``name`` (the file in input
    field ``field``, for a submit's uploads)."""

    name: str
    sent: int
    total: int
    field: str | None = None


ProgressCallback = Callable[[UploadProgress], None]
PathLike = Union[str, "os.PathLike[str]", LocalFile]


@dataclass(frozen=True)
class _Source:
    path: str
    name: str
    size: int
    content_type: str


def _source(path: PathLike, content_type: str | None) -> _Source:
    """Checks a local path names a readable, non-empty file whose media type is known; raises
    FloodgateError otherwise, before anything is sent."""
    if isinstance(path, LocalFile):
        content_type = content_type or path.content_type
        path = path.path
    path = os.fspath(path)
    try:
        st = os.stat(path)
    except OSError as err:
        raise FloodgateError(f"cannot read {path}: {err.strerror or err}") from err
    if not os.path.isfile(path):
        raise FloodgateError(f"{path} is not a file")
    if not os.access(path, os.R_OK):
        raise FloodgateError(f"cannot read {path}: permission denied")
    if st.st_size == 0:
        raise FloodgateError(f"{path} is empty")
    name = os.path.basename(path)
    kind = content_type or content_type_of(name)
    if kind is None:
        raise FloodgateError(
            f"{path}: its extension says no media type an input may have ({', '.join(sorted(EXTENSIONS))});"
            " pass content_type"
        )
    return _Source(path=path, name=name, size=st.st_size, content_type=kind)


def _file_view(answer: Any, what: str) -> dict[str, Any]:
    """An answer checked to be a file record (the fields an upload relies on)."""
    ok = (
        isinstance(answer, dict)
        and isinstance(answer.get("id"), str)
        and isinstance(answer.get("size"), int)
        and isinstance(answer.get("part_bytes"), int)
        and answer["part_bytes"] > 0
        and answer.get("status") in ("uploading", "ready")
    )
    if not ok:
        raise MalformedAnswerError(f"{what}: the answer is not a file record")
    return answer


def _part_count(size: int, part_bytes: int) -> int:
    """Parts an upload of ``size`` bytes has in parts of ``part_bytes`` (shared/outputs.ts)."""
    return max(1, -(-size // part_bytes))


def _part_length(size: int, part_bytes: int, n: int) -> int:
    """The exact length of part ``n`` (1-based): ``part_bytes``, the last one the rest."""
    parts = _part_count(size, part_bytes)
    return part_bytes if n < parts else size - (parts - 1) * part_bytes


def _file_path(file_id: str, rest: str = "") -> str:
    return f"/v1/files/{urllib.parse.quote(file_id, safe='')}{rest}"


class Files:
    """The account's input files (``Client.files``): upload (in parts, resumable), get, list,
    delete."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def upload(
        self,
        path: PathLike,
        content_type: str | None = None,
        on_progress: ProgressCallback | None = None,
        resume: str | None = None,
        *,
        part_bytes: int | None = None,
    ) -> dict[str, Any]:
        """Uploads a local image or video and answers its record, ``ready`` (its ``id`` is what
        a job's input names). ``content_type`` is guessed from the extension when not given;
        ``part_bytes`` (5–64 MiB) is the edge's default, 8 MiB, when not given. With
        ``resume=<file id>`` (an upload that broke off; ``list()`` shows it ``uploading``) only
        the parts the edge has not stored are sent. ``on_progress`` gets an UploadProgress after
        each part. The SHA-256 of the bytes read is checked by the edge at complete."""
        src = _source(path, content_type)
        request = self._client._request
        with open(src.path, "rb") as fh:
            stored: set[int] = set()
            if resume is None:
                body: dict[str, Any] = {"name": src.name, "content_type": src.content_type, "size": src.size}
                if part_bytes is not None:
                    body["part_bytes"] = part_bytes
                file = _file_view(request("POST", "/v1/files", body=body, idempotent=False), "POST /v1/files")
            else:
                parts = request("GET", _file_path(resume, "/parts"), idempotent=True)
                file = _file_view(request("GET", _file_path(resume), idempotent=True), f"GET /v1/files/{resume}")
                if file["size"] != src.size:
                    raise FloodgateError(f"{src.name} is {src.size} bytes; the upload it resumes ({resume}) is {file['size']}")
                if not isinstance(parts, dict) or not isinstance(parts.get("stored"), list):
                    raise MalformedAnswerError(f"GET /v1/files/{resume}/parts: the answer has no stored parts")
                # A part counts as stored only at its exact length, as the edge's complete checks.
                stored = {
                    p["part_number"]
                    for p in parts["stored"]
                    if isinstance(p, dict)
                    and isinstance(p.get("part_number"), int)
                    and p.get("size") == _part_length(file["size"], file["part_bytes"], p["part_number"])
                }
            file_id, size, step = file["id"], file["size"], file["part_bytes"]
            ready = file["status"] == "ready"
            digest = hashlib.sha256()
            sent = 0
            for n in range(1, _part_count(size, step) + 1):
                length = _part_length(size, step, n)
                chunk = fh.read(length)
                if len(chunk) != length:
                    raise FloodgateError(f"{src.path} changed while it was read: it is shorter than {size} bytes")
                digest.update(chunk)
                if not ready and n not in stored:
                    # A part sent twice replaces itself, so each is safe to retry.
                    request("PUT", _file_path(file_id, f"/parts/{n}"), data=chunk, idempotent=True)
                sent += length
                if on_progress is not None:
                    on_progress(UploadProgress(name=src.name, sent=sent, total=size))
        sha256 = digest.hexdigest()
        if ready:
            # Resuming an upload that already completed: the same bytes are that file.
            if file.get("sha256") != sha256:
                raise FloodgateError(f"{file_id} is already complete with other bytes than {src.name}'s")
            return file
        return _file_view(
            request("POST", _file_path(file_id, "/complete"), body={"sha256": sha256}, idempotent=False),
            f"POST /v1/files/{file_id}/complete",
        )

    def get(self, file_id: str) -> dict[str, Any]:
        """The file's record (``file_not_found`` for none of this account's)."""
        return self._client._request("GET", _file_path(file_id), idempotent=True)

    def list(self, *, limit: int | None = None, cursor: str | None = None) -> dict[str, Any]:
        """One page of the account's files, newest first: ``{files, next_cursor}``; pass
        ``next_cursor`` back as ``cursor`` for the next."""
        query = {k: str(v) for k, v in (("limit", limit), ("cursor", cursor)) if v is not None}
        qs = f"?{urllib.parse.urlencode(query)}" if query else ""
        return self._client._request("GET", f"/v1/files{qs}", idempotent=True)

    def delete(self, file_id: str) -> None:
        """Deletes the file and its bytes (an unfinished upload is aborted)."""
        self._client._request("DELETE", _file_path(file_id), idempotent=True)


def _in_field(on_progress: ProgressCallback, field: str) -> ProgressCallback:
    return lambda p: on_progress(dataclasses.replace(p, field=field))


def upload_input_files(
    files: Files, input: dict[str, Any], on_progress: ProgressCallback | None = None
) -> dict[str, Any]:
    """The input with each top-level LocalFile value uploaded and replaced by its file id; the
    input itself when it holds none. Every local file is checked before the first is sent, so a
    missing one fails the submit with nothing uploaded."""
    fields = [(k, v) for k, v in input.items() if isinstance(v, LocalFile)]
    if not fields:
        return input
    for _, v in fields:
        _source(v, None)
    out = dict(input)
    for k, v in fields:
        told = None if on_progress is None else _in_field(on_progress, k)
        out[k] = files.upload(v, on_progress=told)["id"]
    return out
