"""Helpers the native core calls (internal).

They hold the parts that are easier to get right in Python than in Rust: interpreting
a connect handler's outcome (python-socketio's rules), running coroutine handlers as
tasks, and starting WebSocket handler threads.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any, Optional, Set

from . import _tether

#: Tasks started for coroutine handlers (kept alive until done).
_tasks: Set["asyncio.Future[Any]"] = set()

_DEFAULT_REFUSAL = "Connection rejected by server"


def _report(exc: BaseException, what: str) -> None:
    _tether._report(exc, what)


def _refusal(exc: BaseException) -> "tuple[str, Any]":
    """python-socketio's reading of ConnectionRefusedError(*args): message, data."""
    args = exc.args
    if not args:
        return _DEFAULT_REFUSAL, None
    message = str(args[0])
    if len(args) == 1:
        return message, None
    if len(args) == 2:
        return message, args[1]
    return message, list(args[1:])


def _finish_connect(result: Any, request: Any) -> None:
    if result is False:
        request.reject(_DEFAULT_REFUSAL)
    else:
        request.accept()


def _connect_done(task: "asyncio.Future[Any]", request: Any, what: str) -> None:
    _tasks.discard(task)
    if task.cancelled():
        request.reject(_DEFAULT_REFUSAL)
        return
    exc = task.exception()
    if exc is not None:
        if isinstance(exc, _tether.ConnectionRefusedError):
            request.reject(*_refusal(exc))
        else:
            _report(exc, what)
            request.reject(_DEFAULT_REFUSAL)
        return
    _finish_connect(task.result(), request)


def _run_connect(
    handler: Any,
    nargs: int,
    is_coro: bool,
    sid: str,
    environ: "dict[str, Any]",
    auth: Any,
    request: Any,
    what: str,
) -> None:
    """Run a server's connect handler and answer the connection request."""
    full = (sid, environ, auth)
    args = full if nargs < 0 or nargs >= 3 else full[: max(nargs, 0)]
    try:
        result = handler(*args)
    except _tether.ConnectionRefusedError as exc:
        request.reject(*_refusal(exc))
        return
    except Exception as exc:  # reported, and the client refused
        _report(exc, what)
        request.reject(_DEFAULT_REFUSAL)
        return
    if asyncio.iscoroutine(result):
        try:
            task = asyncio.ensure_future(result)
        except RuntimeError as exc:  # no running loop: a coroutine on a sync server
            result.close()
            _report(exc, what + " (async handlers need tether.AsyncServer)")
            request.reject(_DEFAULT_REFUSAL)
            return
        _tasks.add(task)
        task.add_done_callback(lambda t: _connect_done(t, request, what))
        return
    _finish_connect(result, request)


def _task_done(task: "asyncio.Future[Any]", ack: Optional[Any], what: str) -> None:
    _tasks.discard(task)
    if task.cancelled():
        return
    exc = task.exception()
    if exc is not None:
        _report(exc, what)
        return
    if ack is not None:
        try:
            ack._answer(task.result())
        except Exception as e:
            _report(e, what + " (sending the acknowledgement)")


def _spawn(coro: Any, ack: Optional[Any], what: str) -> None:
    """Run a coroutine handler as a task on the running loop; its result answers `ack`."""
    task = asyncio.ensure_future(coro)
    _tasks.add(task)
    task.add_done_callback(lambda t: _task_done(t, ack, what))


def _resolve(fut: "asyncio.Future[Any]", ok: bool, value: Any) -> None:
    """Complete an asyncio future from a native callback (on the loop's thread)."""
    if fut.done():
        return
    if ok:
        fut.set_result(value)
    else:
        fut.set_exception(value)


def _ws_run(handler: Any, conn: Any) -> None:
    try:
        handler(conn)
    except Exception as exc:
        if not isinstance(exc, _tether.DisconnectedError):
            _report(exc, "tether: error in a WebSocket handler")
    finally:
        conn.close()


def _ws_spawn(handler: Any, conn: Any) -> None:
    """Run a WebSocket server handler in its own thread."""
    t = threading.Thread(
        target=_ws_run, args=(handler, conn), name=f"tether-ws-{conn.id}", daemon=True
    )
    t.start()
