"""The Python side of the asyncmcp benchmark: Python asyncmcp 0.2.1 over SQS as server or client.

The Rust benchmark starts this script as a child process and drives it over a line protocol, to
compare the Rust transport with the Python library `asyncmcp` 0.2.1 (PyPI; with `mcp` 1.x and
boto3). It is self-contained: it does not import the interop test peers.

Usage:
    py_bench.py server --request-queue-url URL [--poll-interval SECONDS]
    py_bench.py client --server-queue-url URL --reply-queue-url URL [--poll-interval SECONDS]

Settings:
    Without --poll-interval every asyncmcp config field keeps the library's default (0.2.1:
    wait_time_seconds=20, max_messages=10, visibility_timeout_seconds=30,
    poll_interval_seconds=5.0, client_id a uuid4). --poll-interval sets only
    `poll_interval_seconds` (the sleep after a long poll that returned nothing) on this side's
    config; the benchmark passes 0. Queue URLs are the only other fields set.
    AWS settings come from AWS_ENDPOINT_URL, AWS_REGION, AWS_ACCESS_KEY_ID and
    AWS_SECRET_ACCESS_KEY; region and credentials default to us-east-1 and test/test.
    PY_BENCH_LOG sets the log level (default WARNING). Logs go to stderr only.

Protocol: one JSON object per line each way; stdin carries commands, stdout carries only
protocol lines (each flushed). Every AWS API call attempt this process's boto3 clients make
(HTTP attempts, so retries and idle long polls included) is counted from process start.

server mode
    Serves a low-level MCP server with one tool, echo(text: str) -> one text content equal to
    `text`, through asyncmcp's SqsSessionManager reading --request-queue-url (replies go to the
    queue each client names in its `initialize`).
    out  {"ready": true}                  once the manager is polling
    in   {"cmd": "stats"}            ->   {"api_calls": <int>}
    stdin EOF or SIGTERM/SIGINT: stops the manager and exits 0.

client mode
    Connects with asyncmcp.sqs_client + mcp.ClientSession (requests to --server-queue-url,
    replies on --reply-queue-url), initializes, lists tools (so the SDK's output-schema cache
    is filled once, not by the first calls), warms up with 20 echo calls, 10 at a time, then:
    out  {"ready": true}
    in   {"cmd": "run", "calls": N, "in_flight": K}
         makes N echo calls with arguments {"text": "ping"}, K outstanding at once (K tasks
         pulling from a shared counter, all on one ClientSession), each timed from just before
         the call to its result; a failed call does not stop the level.
    out  {"elapsed_s": <float, wall time of the level>,
          "latencies_ms": [<float>, ...],   one per successful call, in completion order
          "errors": <int>,                  calls that raised, timed out (60 s), returned
                                            isError or returned other text than "ping"
          "api_calls": <int, total since start>}
         so len(latencies_ms) + errors == N.
    in   {"cmd": "stats"}            ->   {"api_calls": <int>}
    stdin EOF or SIGTERM/SIGINT: closes the session and exits 0.
    If connecting or initializing fails it prints {"error": "..."} and exits 1.

Both modes answer a malformed or unknown command with {"error": "<reason>"} and go on.

Shutdown: asyncmcp runs each receive_message long poll in a worker thread that cannot be
cancelled, so a clean stop waits for the current poll (up to wait_time_seconds, 20 s by
default). After SHUTDOWN_GRACE_S (1 s) the process flushes its output and leaves with os._exit(0)
(status 1 after a failed client setup), so a stop takes about 1 s.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import signal
import sys
import threading
import time
from datetime import timedelta
from typing import Any

import anyio
import anyio.from_thread
import anyio.lowlevel
import boto3
import mcp.types as types
from anyio.streams.memory import MemoryObjectReceiveStream
from asyncmcp import SqsClientConfig, SqsServerConfig, SqsSessionManager, sqs_client
from mcp import ClientSession
from mcp.server.lowlevel import Server

log = logging.getLogger("py_bench")

WARMUP_CALLS = 20
WARMUP_IN_FLIGHT = 10
CALL_TIMEOUT_S = 60.0
SHUTDOWN_GRACE_S = 1.0
ECHO_ARGS = {"text": "ping"}


# --- protocol output ---------------------------------------------------------------------------

_stdout_lock = threading.Lock()


def emit(obj: dict) -> None:
    """Writes one protocol line to stdout and flushes it."""
    line = json.dumps(obj, separators=(",", ":")) + "\n"
    with _stdout_lock:
        try:
            sys.stdout.write(line)
            sys.stdout.flush()
        except (BrokenPipeError, ValueError):  # parent went away / stdout closed
            pass


# --- AWS -----------------------------------------------------------------------------------------


class ApiCallCounter:
    """Counts AWS API call attempts of the boto3 clients it is attached to.

    Hooks botocore's `before-send` event: it is emitted in Endpoint._do_get_response once per
    HTTP attempt, so retries count separately (unlike `before-call`, which fires once per API
    call before the retry loop). boto3 calls run in anyio worker threads, hence the lock.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._count = 0

    def attach(self, client: Any) -> Any:
        # "before-send" matches every "before-send.<service>.<operation>" event.
        client.meta.events.register("before-send", self._on_before_send)
        return client

    def _on_before_send(self, **_kwargs: Any) -> None:
        # Must return None: a non-None return would be used as the HTTP response.
        with self._lock:
            self._count += 1

    @property
    def count(self) -> int:
        with self._lock:
            return self._count


def aws_client(service: str, counter: ApiCallCounter) -> Any:
    """A boto3 client from the AWS_* variables (region and credentials default to us-east-1 and
    test/test), with `counter` attached."""
    client = boto3.client(
        service,
        endpoint_url=os.environ.get("AWS_ENDPOINT_URL") or None,
        region_name=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1",
        aws_access_key_id=os.environ.get("AWS_ACCESS_KEY_ID", "test"),
        aws_secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY", "test"),
    )
    return counter.attach(client)


def config_overrides(args: argparse.Namespace) -> dict:
    """The asyncmcp config fields to change from the library defaults."""
    if args.poll_interval is None:
        return {}
    return {"poll_interval_seconds": args.poll_interval}


# --- stdin commands ------------------------------------------------------------------------------


def start_stdin_reader() -> MemoryObjectReceiveStream:
    """Reads stdin lines in a daemon thread (never blocking the event loop) and delivers them,
    as str, on the returned stream; the stream ends at stdin EOF."""
    send, receive = anyio.create_memory_object_stream[str](math.inf)
    token = anyio.lowlevel.current_token()

    def reader() -> None:
        try:
            for raw in sys.stdin.buffer:
                line = raw.decode("utf-8", errors="replace")
                anyio.from_thread.run_sync(send.send_nowait, line, token=token)
        except Exception as exc:  # noqa: BLE001 - loop closed, stdin broken: just stop
            log.debug("stdin reader stopped: %r", exc)
        try:
            anyio.from_thread.run_sync(send.close, token=token)
        except Exception:  # noqa: BLE001
            pass

    threading.Thread(target=reader, name="py_bench stdin", daemon=True).start()
    return receive


def parse_command(line: str) -> dict | None:
    """The command object of a protocol line; None for a blank line. Raises ValueError."""
    if not line.strip():
        return None
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ValueError(f"invalid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise ValueError("expected a JSON object")
    if not isinstance(obj.get("cmd"), str):
        raise ValueError('missing string field "cmd"')
    return obj


def positive_int(obj: dict, key: str, minimum: int) -> int:
    value = obj.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f'"{key}" must be an integer')
    if value < minimum:
        raise ValueError(f'"{key}" must be >= {minimum}')
    return value


async def wait_for_signal(stop: anyio.Event) -> None:
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for signum in signals:
            log.info("signal %s: stopping", signum)
            stop.set()
            arm_exit_watchdog(0)  # also covers a signal before the client is ready
            return


def arm_exit_watchdog(status: int) -> None:
    """Ends the process with `status` if a clean shutdown takes longer than SHUTDOWN_GRACE_S
    (asyncmcp's uncancellable long poll of up to wait_time_seconds)."""

    def force_exit() -> None:
        log.info("shutdown still waiting on a long poll after %.1f s: exiting", SHUTDOWN_GRACE_S)
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # noqa: BLE001
                pass
        os._exit(status)

    timer = threading.Timer(SHUTDOWN_GRACE_S, force_exit)
    timer.daemon = True
    timer.start()


# --- server --------------------------------------------------------------------------------------


def build_app() -> Server:
    """The benchmark MCP server: one tool, echo(text) -> text."""
    app = Server("asyncmcp-py-bench-server")

    @app.list_tools()
    async def list_tools() -> list[types.Tool]:
        return [
            types.Tool(
                name="echo",
                description="Return the given text unchanged",
                inputSchema={
                    "type": "object",
                    "properties": {"text": {"type": "string"}},
                    "required": ["text"],
                },
            )
        ]

    @app.call_tool()
    async def call_tool(name: str, arguments: dict) -> list[types.TextContent]:
        if name == "echo":
            return [types.TextContent(type="text", text=str(arguments["text"]))]
        raise ValueError(f"unknown tool: {name}")

    return app


async def server_commands(commands: MemoryObjectReceiveStream, counter: ApiCallCounter, stop: anyio.Event) -> None:
    async with commands:
        async for line in commands:
            try:
                cmd = parse_command(line)
                if cmd is None:
                    continue
                if cmd["cmd"] == "stats":
                    emit({"api_calls": counter.count})
                else:
                    raise ValueError(f"unknown command {cmd['cmd']!r} (server mode knows: stats)")
            except ValueError as exc:
                emit({"error": str(exc)})
    log.info("stdin closed: stopping")
    stop.set()


async def run_server(args: argparse.Namespace) -> int:
    counter = ApiCallCounter()
    config = SqsServerConfig(read_queue_url=args.request_queue_url, **config_overrides(args))
    log.info("server config: %s", config)
    manager = SqsSessionManager(build_app(), config, aws_client("sqs", counter))
    stop = anyio.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(wait_for_signal, stop)
        async with manager.run():
            # run() has started the receive loop; its first long poll is under way.
            emit({"ready": True})
            tg.start_soon(server_commands, start_stdin_reader(), counter, stop)
            await stop.wait()
            arm_exit_watchdog(0)
        tg.cancel_scope.cancel()
    return 0


# --- client --------------------------------------------------------------------------------------


async def echo_once(session: ClientSession) -> float | None:
    """One echo call; its latency in ms, or None if it failed."""
    started = time.perf_counter()
    try:
        result = await session.call_tool(
            "echo", ECHO_ARGS, read_timeout_seconds=timedelta(seconds=CALL_TIMEOUT_S)
        )
    except Exception as exc:  # noqa: BLE001 - any failure is one error, the level goes on
        log.warning("echo call failed: %r", exc)
        return None
    latency_ms = (time.perf_counter() - started) * 1000.0
    if result.isError:
        log.warning("echo returned isError: %r", result.content)
        return None
    texts = [block.text for block in result.content if isinstance(block, types.TextContent)]
    if texts != [ECHO_ARGS["text"]]:
        log.warning("echo returned unexpected content: %r", result.content)
        return None
    return latency_ms


async def run_level(session: ClientSession, calls: int, in_flight: int) -> dict:
    """`calls` echo calls with `in_flight` workers pulling from a shared counter."""
    latencies: list[float] = []
    errors = 0
    issued = 0

    async def worker() -> None:
        nonlocal errors, issued
        while issued < calls:
            issued += 1
            latency = await echo_once(session)
            if latency is None:
                errors += 1
            else:
                latencies.append(latency)

    started = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for _ in range(min(in_flight, calls)):
            tg.start_soon(worker)
    elapsed = time.perf_counter() - started
    return {"elapsed_s": elapsed, "latencies_ms": latencies, "errors": errors}


async def client_commands(
    session: ClientSession, commands: MemoryObjectReceiveStream, counter: ApiCallCounter
) -> None:
    async with commands:
        async for line in commands:
            try:
                cmd = parse_command(line)
                if cmd is None:
                    continue
                if cmd["cmd"] == "run":
                    calls = positive_int(cmd, "calls", 0)
                    in_flight = positive_int(cmd, "in_flight", 1)
                    level = await run_level(session, calls, in_flight)
                    level["api_calls"] = counter.count
                    emit(level)
                elif cmd["cmd"] == "stats":
                    emit({"api_calls": counter.count})
                else:
                    raise ValueError(f"unknown command {cmd['cmd']!r} (client mode knows: run, stats)")
            except ValueError as exc:
                emit({"error": str(exc)})
    log.info("stdin closed: closing the session")


async def run_client(args: argparse.Namespace) -> int:
    counter = ApiCallCounter()
    config = SqsClientConfig(
        read_queue_url=args.server_queue_url,
        response_queue_url=args.reply_queue_url,
        **config_overrides(args),
    )
    log.info("client config: %s", config)
    stop = anyio.Event()
    status = 0
    async with anyio.create_task_group() as tg:
        tg.start_soon(wait_for_signal, stop)
        async with sqs_client(config, aws_client("sqs", counter)) as (read, write):
            async with ClientSession(read, write) as session:
                try:
                    with anyio.fail_after(CALL_TIMEOUT_S):
                        await session.initialize()
                        tools = await session.list_tools()
                    names = sorted(tool.name for tool in tools.tools)
                    if "echo" not in names:
                        raise RuntimeError(f"server does not list echo (tools: {names})")
                except Exception as exc:  # noqa: BLE001 - report, then leave with status 1
                    emit({"error": f"client setup failed: {exc!r}"})
                    status = 1
                    arm_exit_watchdog(status)
                else:
                    warmup = await run_level(session, WARMUP_CALLS, WARMUP_IN_FLIGHT)
                    if warmup["errors"]:
                        log.warning("warm-up: %d of %d calls failed", warmup["errors"], WARMUP_CALLS)
                    emit({"ready": True})

                    async def commands_then_stop() -> None:
                        await client_commands(session, start_stdin_reader(), counter)
                        stop.set()

                    async with anyio.create_task_group() as inner:
                        inner.start_soon(commands_then_stop)
                        await stop.wait()
                        arm_exit_watchdog(0)
                        inner.cancel_scope.cancel()
        tg.cancel_scope.cancel()
    return status


# --- main ----------------------------------------------------------------------------------------


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    modes = parser.add_subparsers(dest="mode", required=True)
    server = modes.add_parser("server", help="serve echo over SQS with SqsSessionManager")
    server.add_argument("--request-queue-url", required=True, help="queue the server reads requests from")
    client = modes.add_parser("client", help="call echo over SQS with sqs_client + ClientSession")
    client.add_argument("--server-queue-url", required=True, help="queue the server reads requests from")
    client.add_argument("--reply-queue-url", required=True, help="queue this client reads replies from")
    for sub in (server, client):
        sub.add_argument(
            "--poll-interval",
            type=float,
            default=None,
            metavar="SECONDS",
            help="asyncmcp poll_interval_seconds (sleep after an empty long poll); default: library default",
        )
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=os.environ.get("PY_BENCH_LOG", "WARNING").upper(),
        stream=sys.stderr,
        format="%(asctime)s py_bench[" + args.mode + "] %(levelname)s %(name)s: %(message)s",
    )
    runner = run_server if args.mode == "server" else run_client
    try:
        return anyio.run(runner, args)
    except KeyboardInterrupt:
        return 0
    except BaseException as exc:  # noqa: BLE001 - report anything, including exception groups
        log.error("fatal: %r", exc, exc_info=True)
        emit({"error": f"fatal: {exc!r}"})
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
