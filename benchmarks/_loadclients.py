"""Client processes for load benchmarks: each holds many python-socketio clients and obeys a coordinator.

One Python process cannot receive a broadcast on hundreds of sockets fast enough to measure a server (it becomes
the bottleneck), so a benchmark spreads its simulated users over several OS processes started with `LoadClients`.

Each worker (`python -m benchmarks._loadclients`, uvloop) reads one JSON command per line on stdin and answers
one JSON line on stdout (the real stdout; anything else printed goes to stderr):
- `connect`: open websocket connections (`url`, `token`, `tag`, `racer`) as a named `group` and watch one event on
  all of them, recording when each socket first received it for a key read from the payload (`key`: a dotted path);
- `seen`: wait (bounded) until every socket of the group in this worker has received the event for a key; answer
  the receipt times and how many are missing;
- `race`: every racer socket of the group emits the same event at once; answer, per racer, the send time, the ack
  time and whether the ack was `ok` (with the error code if not);
- `disconnect` (one group or all), `quit`.

Times are `time.perf_counter()`, which on Linux is CLOCK_MONOTONIC: one clock for every process on the machine, so
the coordinator can subtract a time taken in its own process from a time taken in a worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable

from benchmarks._cluster import ROOT


def _extract(data: Any, path: list[str]) -> Any:
    for part in path:
        data = data[part]
    return data


def _ack_summary(args: tuple[Any, ...]) -> tuple[bool, str | None]:
    ack = args[0] if args else None
    if isinstance(ack, dict) and "ok" in ack:
        if ack["ok"]:
            return True, None
        error = ack.get("error") or {}
        return False, str(error.get("code", "error"))
    return True, None


@dataclass
class Group:
    """Sockets connected together (e.g. to one cluster); keys of the watched event are counted per group."""

    socks: list[Any] = field(default_factory=list)
    racers: list[tuple[Any, Any]] = field(default_factory=list)
    seen: dict[Any, dict[int, float]] = field(default_factory=dict)
    complete: dict[Any, asyncio.Event] = field(default_factory=dict)


class Worker:
    def __init__(self, out: Any) -> None:
        self.out = out
        self.groups: dict[str, Group] = {}

    def reply(self, msg: dict[str, Any]) -> None:
        self.out.write(json.dumps(msg, separators=(",", ":")).encode() + b"\n")
        self.out.flush()

    @staticmethod
    def _on_watch(group: Group, index: int, path: list[str]) -> Any:
        def handler(data: Any = None, *_: Any) -> None:
            now = time.perf_counter()
            try:
                key = _extract(data, path)
            except (KeyError, TypeError, IndexError):
                return
            got = group.seen.setdefault(key, {})
            if index not in got:
                got[index] = now
                if len(got) >= len(group.socks):
                    group.complete.setdefault(key, asyncio.Event()).set()

        return handler

    async def connect(self, cmd: dict[str, Any]) -> dict[str, Any]:
        import socketio

        group = self.groups.setdefault(str(cmd.get("group", "")), Group())
        path = str(cmd["key"]).split(".")
        sem = asyncio.Semaphore(int(cmd.get("concurrency", 20)))
        failed: list[str] = []
        specs = cmd["sockets"]
        base = len(group.socks)

        async def one(n: int, spec: dict[str, Any]) -> None:
            sio = socketio.AsyncClient(reconnection=False)
            sio.on(cmd["watch"], self._on_watch(group, base + n, path))
            group.socks.append(sio)
            if spec.get("racer"):
                group.racers.append((spec["tag"], sio))
            async with sem:
                try:
                    await sio.connect(spec["url"], auth={"token": spec.get("token")}, transports=["websocket"],
                                      wait_timeout=float(cmd.get("timeout", 30)))
                except Exception as exc:  # noqa: BLE001 - reported to the coordinator
                    failed.append(f"{spec['tag']}: {type(exc).__name__}: {exc}")

        await asyncio.gather(*(one(n, spec) for n, spec in enumerate(specs)))
        return {"connected": len(specs) - len(failed), "failed": failed[:5], "failures": len(failed)}

    async def wait_seen(self, cmd: dict[str, Any]) -> dict[str, Any]:
        group = self.groups.get(str(cmd.get("group", "")), Group())
        key = cmd["key"]
        event = group.complete.setdefault(key, asyncio.Event())
        if len(group.seen.get(key, {})) < len(group.socks):
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(event.wait(), float(cmd.get("timeout", 10)))
        got = group.seen.pop(key, {})
        group.complete.pop(key, None)
        return {"times": list(got.values()), "missing": len(group.socks) - len(got)}

    async def race(self, cmd: dict[str, Any]) -> dict[str, Any]:
        group = self.groups.get(str(cmd.get("group", "")), Group())
        loop = asyncio.get_running_loop()
        timeout = float(cmd.get("timeout", 10))

        async def one(tag: Any, sio: Any) -> list[Any]:
            fut = loop.create_future()

            def on_ack(*args: Any) -> None:
                if not fut.done():
                    fut.set_result((time.perf_counter(), args))

            sent = time.perf_counter()
            try:
                await sio.emit(cmd["event"], cmd.get("data"), callback=on_ack)
                acked, args = await asyncio.wait_for(fut, timeout)
            except asyncio.TimeoutError:
                return [tag, False, "timeout", sent, None]
            except Exception as exc:  # noqa: BLE001 - reported to the coordinator
                return [tag, False, f"client:{type(exc).__name__}", sent, None]
            ok, code = _ack_summary(args)
            return [tag, ok, code, sent, acked]

        results = await asyncio.gather(*(one(tag, sio) for tag, sio in group.racers))
        return {"results": results}

    async def disconnect(self, cmd: dict[str, Any] | None = None) -> dict[str, Any]:
        """Close the sockets of one group (`group`), or of every group."""
        name = (cmd or {}).get("group")
        names = [str(name)] if name is not None else list(self.groups)

        async def one(sio: Any) -> None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(sio.disconnect(), 5)

        for n in names:
            group = self.groups.pop(n, None)
            if group is not None:
                await asyncio.gather(*(one(s) for s in group.socks))
        return {}

    async def run(self) -> None:
        await serve_commands(self.handle)
        await self.disconnect()

    async def handle(self, cmd: dict[str, Any]) -> None:
        try:
            op = cmd["op"]
            if op == "connect":
                result = await self.connect(cmd)
            elif op == "seen":
                result = await self.wait_seen(cmd)
            elif op == "race":
                result = await self.race(cmd)
            elif op == "disconnect":
                result = await self.disconnect(cmd)
            elif op == "ping":
                result = {"t": time.perf_counter()}
            else:
                raise ValueError(f"unknown op {op}")
            self.reply({"id": cmd["id"], "ok": True, **result})
        except Exception as exc:  # noqa: BLE001 - reported to the coordinator
            self.reply({"id": cmd.get("id"), "ok": False, "error": f"{type(exc).__name__}: {exc}"})


def worker_main() -> int:
    import uvloop

    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # stray prints go to stderr, never into the protocol
    sys.stdout = sys.stderr
    uvloop.run(Worker(out).run())
    return 0


class LoadClients:
    """Starts `processes` workers and talks to them; an async context manager that always stops them."""

    def __init__(self, processes: int, log_dir: Path | None = None) -> None:
        self.processes = processes
        self.log_dir = log_dir
        self._procs: list[asyncio.subprocess.Process] = []
        self._readers: list[asyncio.Task[None]] = []
        self._pending: list[dict[int, asyncio.Future[dict[str, Any]]]] = []
        self._next = 0

    async def start(self) -> "LoadClients":
        for n in range(self.processes):
            log: Any = None
            if self.log_dir is not None:
                self.log_dir.mkdir(parents=True, exist_ok=True)
                log = open(self.log_dir / f"clients-{n}.log", "wb")  # noqa: SIM115 - the child keeps it
            try:
                proc = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "benchmarks._loadclients", cwd=ROOT, stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE, stderr=log, limit=64 * 1024 * 1024,
                )
            finally:
                if log is not None:
                    log.close()
            self._procs.append(proc)
            self._pending.append({})
            self._readers.append(asyncio.get_running_loop().create_task(self._read(n, proc)))
        await self.each([{"op": "ping"}] * self.processes, timeout=30)
        return self

    async def _read(self, n: int, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        while True:
            line = await proc.stdout.readline()
            if not line:
                break
            msg = json.loads(line)
            fut = self._pending[n].pop(msg.get("id"), None)
            if fut is not None and not fut.done():
                fut.set_result(msg)
        for fut in list(self._pending[n].values()):  # the worker died: fail whoever waits on it
            if not fut.done():
                fut.set_exception(RuntimeError(f"client process {n} exited ({proc.returncode})"))

    async def send(self, worker: int, cmd: dict[str, Any], timeout: float) -> dict[str, Any]:
        self._next += 1
        cmd_id = self._next
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        proc = self._procs[worker]
        if proc.returncode is not None or proc.stdin is None:
            raise RuntimeError(f"client process {worker} exited ({proc.returncode})")
        self._pending[worker][cmd_id] = fut
        proc.stdin.write(json.dumps({**cmd, "id": cmd_id}).encode() + b"\n")
        try:
            msg = await asyncio.wait_for(fut, timeout)
        finally:
            self._pending[worker].pop(cmd_id, None)
        if not msg.get("ok"):
            raise RuntimeError(f"client process {worker}: {msg.get('error')}")
        return msg

    async def each(self, cmds: list[dict[str, Any]], timeout: float) -> list[dict[str, Any]]:
        """One command per worker, all sent before any answer is awaited."""
        return list(await asyncio.gather(*(self.send(n, cmd, timeout) for n, cmd in enumerate(cmds))))

    async def all(self, cmd: dict[str, Any], timeout: float) -> list[dict[str, Any]]:
        return await self.each([cmd] * self.processes, timeout)

    async def stop(self) -> None:
        for proc in self._procs:
            if proc.returncode is None and proc.stdin is not None:
                with contextlib.suppress(Exception):
                    proc.stdin.write(b'{"op":"quit"}\n')
                    proc.stdin.close()
        for proc in self._procs:
            try:
                await asyncio.wait_for(proc.wait(), 15)
            except asyncio.TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        for task in self._readers:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._procs.clear()
        self._readers.clear()
        self._pending.clear()

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self._procs]

    async def __aenter__(self) -> "LoadClients":
        try:
            return await self.start()
        except BaseException:
            await self.stop()
            raise

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()


async def serve_commands(handle: Callable[[dict[str, Any]], Awaitable[Any]]) -> None:
    """A worker process's command loop: one JSON command per line on stdin, each handled in its own task, until
    `{"op": "quit"}` or end of input (then the tasks still running are cancelled)."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=64 * 1024 * 1024)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    tasks: set[asyncio.Task[Any]] = set()
    while True:
        line = await reader.readline()
        if not line:
            break
        cmd = json.loads(line)
        if cmd["op"] == "quit":
            break
        task = loop.create_task(handle(cmd))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    for task in list(tasks):
        task.cancel()


if __name__ == "__main__":
    raise SystemExit(worker_main())
