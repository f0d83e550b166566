"""Bridging blocking engines (llama.cpp, torch) to asyncio without blocking the event loop."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import TypeVar

T = TypeVar("T")
_END = object()


async def iterate_in_thread(
    make_iterator: Callable[[], Iterator[T]], lock: threading.Lock
) -> AsyncIterator[T]:
    """Run a blocking iterator in a worker thread (holding ``lock``) and yield its items.

    When the consumer stops early (client disconnect, a guard blocks), the worker stops at its
    next item, so the engine is not left generating for nobody.
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[object] = asyncio.Queue()
    stop = threading.Event()

    def work() -> None:
        try:
            with lock:
                for item in make_iterator():
                    loop.call_soon_threadsafe(queue.put_nowait, item)
                    if stop.is_set():
                        break
        except BaseException as exc:  # handed to the consumer, re-raised there
            loop.call_soon_threadsafe(queue.put_nowait, exc)
        finally:
            loop.call_soon_threadsafe(queue.put_nowait, _END)

    worker = loop.run_in_executor(None, work)
    try:
        while True:
            item = await queue.get()
            if item is _END:
                break
            if isinstance(item, BaseException):
                raise item
            yield item  # type: ignore[misc]
    finally:
        stop.set()
        await asyncio.shield(worker)


async def run_locked(fn: Callable[[], T], lock: threading.Lock) -> T:
    """Run a blocking call in a worker thread while holding ``lock``."""

    def call() -> T:
        with lock:
            return fn()

    return await asyncio.to_thread(call)
