"""Limits every request meets before a handler sees it: no NUL in a query parameter, the path or
a JSON body (PostgreSQL's text cannot hold one), and JSON nested at most `MAX_JSON_DEPTH` deep
(deeper would exhaust the decoder's recursion). Each refusal is a 422 problem naming the field."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from litestar.types import ASGIApp, Receive, ReceiveMessage, Scope, Send

from services.common.http.problems import FieldProblem, UnprocessableProblem

#: Deeper than any form this API takes (the intake form nests four levels).
MAX_JSON_DEPTH = 32
_TOKENS = re.compile(rb'["\\\[\]{}]')
_NUL_ESCAPE = re.compile(rb"\\u0000", re.I)


def json_depth_exceeds(body: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether `body` (JSON text, valid or not) opens more than `limit` arrays or objects at once."""
    if body.count(b"[") + body.count(b"{") <= limit:
        return False  # cannot nest deeper than it opens (the usual body: no walk at all)
    depth, in_string, escaped_at = 0, False, -2
    for match in _TOKENS.finditer(body):
        token, at = match.group(), match.start()
        if in_string:
            if token == b"\\" and escaped_at != at - 1:
                escaped_at = at
            elif token == b'"' and escaped_at != at - 1:
                in_string = False
            continue
        if token == b'"':
            in_string = True
        elif token in (b"[", b"{"):
            depth += 1
            if depth > limit:
                return True
        elif token in (b"]", b"}"):
            depth -= 1
    return False


def query_problems(scope: Scope) -> list[FieldProblem]:
    problems = []
    if "\x00" in scope.get("path", ""):
        problems.append(FieldProblem(field="path", message="Contains a NUL character."))
    raw = scope.get("query_string", b"")
    if b"%00" in raw or b"\x00" in raw:
        for name, value in parse_qsl(raw.decode("latin-1"), keep_blank_values=True):
            if "\x00" in name or "\x00" in value:
                problems.append(
                    FieldProblem(field=name.replace("\x00", ""), message="Contains a NUL character.")
                )
    return problems


def _nul_paths(value: Any, path: str = "") -> Iterator[str]:
    if isinstance(value, str) and "\x00" in value:
        yield path or "body"
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _nul_paths(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _nul_paths(item, f"{path}[{index}]")


def body_problems(body: bytes) -> list[FieldProblem]:
    if json_depth_exceeds(body):
        return [FieldProblem(field="body", message=f"JSON nested deeper than {MAX_JSON_DEPTH} levels.")]
    if b"\x00" in body or _NUL_ESCAPE.search(body):
        try:
            paths = list(_nul_paths(json.loads(body))) or ["body"]
        except ValueError:
            paths = ["body"]
        return [FieldProblem(field=p, message="Contains a NUL character (\\u0000).") for p in paths]
    return []


@dataclass
class ReadBody:
    """A request body read ahead of its handler, and the messages it came in (to replay)."""

    messages: list[ReceiveMessage]
    body: bytes
    #: Not over the limit (reading stopped at the first message past it).
    within_limit: bool
    #: The whole body arrived (the client did not leave, nor send past the limit).
    complete: bool

    def replay(self, receive: Receive) -> Receive:
        """A `receive` that gives the messages read, then what `receive` gives."""
        messages = list(self.messages)

        async def replayed() -> ReceiveMessage:
            return messages.pop(0) if messages else await receive()

        return replayed


async def read_body(receive: Receive, limit: int) -> ReadBody:
    """Read a request's body, up to the first message past `limit` bytes."""
    messages: list[ReceiveMessage] = []
    chunks: list[bytes] = []
    size, more = 0, True
    while more and size <= limit:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        size += len(chunks[-1])
        more = message.get("more_body", False)
    return ReadBody(messages, b"".join(chunks), size <= limit, size <= limit and not more)


class InputLimitsMiddleware:
    """Refuses NUL characters and over-deep JSON with a 422 before any handler runs."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # type: ignore[comparison-overlap]
            await self.app(scope, receive, send)
            return
        if problems := query_problems(scope):
            raise UnprocessableProblem(problems, detail="A query parameter is not valid.")
        if scope.get("method") not in ("POST", "PUT", "PATCH", "DELETE"):
            await self.app(scope, receive, send)
            return
        read = await read_body(receive, scope["app"].state["clinic_settings"].max_body_bytes)
        if read.within_limit and (problems := body_problems(read.body)):
            raise UnprocessableProblem(problems)
        await self.app(scope, read.replay(receive), send)
