"""Helpers for the end-to-end tests."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run_async(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine to completion on a loop of its own, in a thread of its own.

    Sync tests need this: Playwright's sync API keeps an event loop running in
    the main thread, where ``asyncio.run`` refuses to start another one.
    """
    result: list[T] = []
    error: list[BaseException] = []

    def main() -> None:
        try:
            result.append(asyncio.run(make()))
        except BaseException as exc:
            error.append(exc)

    thread = threading.Thread(target=main, name="run-async")
    thread.start()
    thread.join()
    if error:
        raise error[0]
    return result[0]
