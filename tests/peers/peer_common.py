"""What every Python interop peer does the same way: how it fails, and how it runs.

A peer prints ONE JSON line on success and exits 0; on failure it prints `NAME: why` on
stderr and exits 1 (2 for bad usage, 124 for a timeout). A backstop timer ends the
process whatever happens inside the event loop.
"""
import asyncio
import json
import os
import sys
import threading


def die(name: str, msg: str, code: int = 1) -> None:
    sys.stderr.write(f"{name}: {msg}\n")
    sys.stderr.flush()
    os._exit(code)


def describe(exc: BaseException) -> str:
    """Flatten exception groups (anyio task groups wrap everything) into one line."""
    if isinstance(exc, BaseExceptionGroup):
        return "; ".join(describe(e) for e in exc.exceptions)
    text = str(exc) or repr(exc)
    return f"{type(exc).__name__}: {text}"


def run(name: str, work, timeout: float, what: str) -> None:
    """Runs the coroutine `work` within `timeout` seconds; prints its result as one JSON
    line and exits 0, or dies saying what it was doing (`what`)."""
    killer = threading.Timer(timeout + 5, die, args=(name, f"hard timeout after {timeout + 5:.0f}s", 124))
    killer.daemon = True
    killer.start()
    try:
        out = asyncio.run(asyncio.wait_for(work, timeout))
    except (asyncio.TimeoutError, TimeoutError):
        die(name, f"timed out after {timeout:.0f}s: {what}", 124)
    except BaseException as e:  # noqa: BLE001 - a peer reports every failure the same way
        die(name, f"{what}: {describe(e)}")
    sys.stdout.write(json.dumps(out) + "\n")
    sys.stdout.flush()
    os._exit(0)
