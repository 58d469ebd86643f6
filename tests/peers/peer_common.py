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


class Failure(Exception):
    """A failure the peer itself detected (not the SDK's): reported as its message only."""


def die(name: str, msg: str, code: int = 1) -> None:
    sys.stderr.write(f"{name}: {msg}\n")
    sys.stderr.flush()
    os._exit(code)


def describe(exc: BaseException) -> str:
    """Flatten exception groups (anyio task groups wrap everything) into one line."""
    if isinstance(exc, BaseExceptionGroup):
        return "; ".join(describe(e) for e in exc.exceptions)
    if isinstance(exc, Failure):
        return str(exc)
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


def split_options(argv: list[str], flags: dict[str, int]) -> tuple[dict[str, list[str]], list[str]]:
    """Takes the leading `--flag VALUE...` (or `--flag=VALUE` for one-value flags) off argv.
    `flags` maps each flag to how many values it takes. Returns ({flag: values}, rest);
    raises ValueError on an unknown flag or a missing value."""
    opts: dict[str, list[str]] = {}
    while argv and argv[0].startswith("--"):
        flag, eq, value = argv[0].partition("=")
        if flag not in flags:
            raise ValueError(f"unknown option {flag}")
        n = flags[flag]
        if eq:
            if n != 1:
                raise ValueError(f"{flag} takes {n} values")
            opts[flag], argv = [value], argv[1:]
            continue
        if len(argv) < n + 1:
            raise ValueError(f"{flag} needs {n} value(s)")
        opts[flag], argv = argv[1 : n + 1], argv[n + 1 :]
    return opts, argv


def stdio_argv(url: str) -> list[str]:
    """The server command of a stdio run: URL is a JSON array of strings (argv)."""
    try:
        argv = json.loads(url)
    except json.JSONDecodeError as e:
        raise ValueError(f"for stdio, URL must be a JSON array argv: {e}") from None
    if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
        raise ValueError("for stdio, URL must be a non-empty JSON array of strings")
    return argv


MAX_REFUSAL_TRIES = 6


async def prove_refusal(call, error_type, error_fields, tool: str, args: dict) -> dict:
    """--refusal: calls `call(tool, args)` up to 6 times in a row until one raises
    `error_type` (a JSON-RPC error; a result with isError is not a refusal), waits the
    error's data.retry_after_ms + 100 ms (1000 ms without one), then calls once more on the
    same session. Returns {"refused": {code, message, data}, "after": <the last call's
    result, as returned by `call`>}; raises Failure when nothing was refused or the call
    after the refusal fails."""
    refused = None
    for _ in range(MAX_REFUSAL_TRIES):
        try:
            await call(tool, args)
        except error_type as e:
            refused = error_fields(e)
            break
    if refused is None:
        raise Failure(f"no call was refused ({MAX_REFUSAL_TRIES} calls of {tool} all answered)")
    data = refused.get("data")
    retry = data.get("retry_after_ms") if isinstance(data, dict) else None
    wait_ms = retry + 100 if isinstance(retry, (int, float)) and not isinstance(retry, bool) else 1000
    await asyncio.sleep(wait_ms / 1000)
    try:
        after = await call(tool, args)
    except BaseException as e:  # noqa: BLE001 - any failure here is the finding
        if isinstance(e, (asyncio.CancelledError, KeyboardInterrupt, SystemExit)):
            raise
        raise Failure(
            f"the session did not survive the refusal (refused {refused['code']} {refused['message']!r}, "
            f"then {tool} after {wait_ms:.0f} ms failed: {describe(e)})"
        ) from None
    return {"refused": refused, "after": after}
