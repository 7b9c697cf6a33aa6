"""The ops endpoint over real HTTP on a free local port, and the JSON log lines."""

from __future__ import annotations

import asyncio
import errno
import io
import json
import logging
import os
import signal
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY, Counter

from newcore.adapters.ops import JsonLines, OpsEndpoint, Repeats, configure_logging, serve_ops

PINGS = Counter("test_ops_pings", "Incremented by the ops endpoint's test")


def run_with_ops(
    health: Callable[[], dict[str, Any]],
    check: Callable[[OpsEndpoint, httpx.AsyncClient], Awaitable[None]],
) -> None:
    async def main() -> None:
        ops = await serve_ops("127.0.0.1", 0, health)
        try:
            base = f"http://127.0.0.1:{ops.port}"
            async with httpx.AsyncClient(base_url=base, timeout=5, trust_env=False) as client:
                await check(ops, client)
        finally:
            await ops.stop()

    asyncio.run(main())


def test_metrics_show_a_counter_with_its_value() -> None:
    PINGS.inc(3)
    value = REGISTRY.get_sample_value("test_ops_pings_total")

    async def check(ops: OpsEndpoint, client: httpx.AsyncClient) -> None:
        answer = await client.get("/metrics")
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/plain")
        assert f"test_ops_pings_total {value}\n" in answer.text

    run_with_ops(lambda: {"ok": True}, check)


def test_healthz_answers_200_or_503_with_the_health_and_other_paths_are_404() -> None:
    state: dict[str, Any] = {"ok": True, "kafka": "up", "owned_partitions": [1, 2]}

    async def check(ops: OpsEndpoint, client: httpx.AsyncClient) -> None:
        healthy = await client.get("/healthz")
        assert healthy.status_code == 200
        assert healthy.headers["content-type"] == "application/json"
        body = healthy.json()
        assert body.pop("checked_at") > 0
        assert body == state

        state.update(ok=False, kafka="unavailable")
        unhealthy = await client.get("/healthz")
        assert unhealthy.status_code == 503
        assert unhealthy.json()["kafka"] == "unavailable"
        assert "checked_at" in unhealthy.json()

        assert (await client.get("/")).status_code == 404
        assert (await client.get("/healthz/extra")).status_code == 404
        assert (await client.post("/healthz")).status_code == 405

    run_with_ops(lambda: dict(state), check)


def test_a_port_in_use_is_a_clear_error_and_stop_frees_the_port() -> None:
    async def main() -> None:
        first = await serve_ops("127.0.0.1", 0, lambda: {"ok": True})
        port = first.port
        with pytest.raises(OSError, match=f"127.0.0.1:{port}") as refused:
            await serve_ops("127.0.0.1", port, lambda: {"ok": True})
        assert refused.value.errno == errno.EADDRINUSE
        await first.stop()
        again = await serve_ops("127.0.0.1", port, lambda: {"ok": True})
        assert again.port == port
        again.close()  # the non-blocking way: listeners closed at once
        third = await serve_ops("127.0.0.1", port, lambda: {"ok": True})
        await third.stop()
        await again.stop()

    asyncio.run(main())


def test_the_process_keeps_its_own_sigterm_handler() -> None:
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}

    async def main() -> None:
        loop = asyncio.get_running_loop()
        stopping = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, stopping.set)
        try:
            installed = {sig: signal.getsignal(sig) for sig in before}  # asyncio.run's SIGINT
            ops = await serve_ops("127.0.0.1", 0, lambda: {"ok": True})
            assert {sig: signal.getsignal(sig) for sig in before} == installed
            os.kill(os.getpid(), signal.SIGTERM)
            await asyncio.wait_for(stopping.wait(), timeout=5)
            # The worker decides when to stop: its endpoint still answers meanwhile.
            async with httpx.AsyncClient(timeout=5, trust_env=False) as client:
                answer = await client.get(f"http://127.0.0.1:{ops.port}/healthz")
            assert answer.status_code == 200
            await ops.stop()
            assert {sig: signal.getsignal(sig) for sig in before} == installed
        finally:
            loop.remove_signal_handler(signal.SIGTERM)

    asyncio.run(main())
    assert {sig: signal.getsignal(sig) for sig in before} == before


# Log lines.


@pytest.fixture
def lines() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonLines("capturer"))
    log = logging.getLogger("capturer")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    try:
        yield log, out
    finally:
        log.removeHandler(handler)
        log.setLevel(logging.NOTSET)
        log.propagate = True


def parsed(out: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_a_line_is_json_with_our_fields_first_and_the_callers_after(
    lines: tuple[logging.Logger, io.StringIO],
) -> None:
    log, out = lines
    log.warning("部屋 %s を修復して", 7, extra={"room_id": 7, "reason": "行方不明"})
    assert "部屋 7" in out.getvalue() and "\\u" not in out.getvalue()  # readable as it is
    [line] = parsed(out)
    assert list(line)[:4] == ["ts", "level", "service", "msg"]
    assert line["ts"] == round(line["ts"], 3) and line["ts"] > 1_600_000_000
    assert line["level"] == "warning"
    assert line["service"] == "capturer"
    assert line["msg"] == "部屋 7 を修復して"
    assert line["room_id"] == 7 and line["reason"] == "行方不明"
    assert "error" not in line


def test_a_callers_field_never_overwrites_ours(lines: tuple[logging.Logger, io.StringIO]) -> None:
    log, out = lines
    try:
        raise ValueError("broken")
    except ValueError:
        log.exception(
            "failed", extra={"ts": 1, "level": "x", "service": "y", "error": "e", "stack": "s"}
        )
    [line] = parsed(out)
    assert line["ts"] > 1_600_000_000
    assert (line["level"], line["service"], line["msg"]) == ("error", "capturer", "failed")
    assert line["error"].startswith("Traceback") and "ValueError: broken" in line["error"]
    assert line["extra_ts"] == 1 and line["extra_level"] == "x" and line["extra_service"] == "y"
    assert line["extra_error"] == "e" and line["extra_stack"] == "s"
    with pytest.raises(KeyError):  # stdlib logging refuses these two itself
        log.info("x", extra={"msg": "y"})
    with pytest.raises(KeyError):
        log.info("x", extra={"message": "y"})


@pytest.fixture
def root_restored() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    levels = {name: logging.getLogger(name).level for name in ("aiokafka", "uvicorn")}
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        for name, was in levels.items():
            logging.getLogger(name).setLevel(was)


def test_configure_logging_writes_json_to_stderr_and_thins_a_librarys_repeats(
    root_restored: None, capsys: pytest.CaptureFixture[str]
) -> None:
    log = configure_logging("updater")
    for _ in range(5):
        logging.getLogger("happybase").error("Connection refused")
        log.info("waiting for HBase", extra={"backoff_ms": 100})
    logging.getLogger("aiokafka").info("below the level set for it")
    written = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert [line["msg"] for line in written].count("Connection refused") == 1
    ours = [line for line in written if line["msg"] == "waiting for HBase"]
    assert len(ours) == 5
    assert all(line["service"] == "updater" and line["backoff_ms"] == 100 for line in ours)
    assert len(written) == 6


def record(name: str, msg: str, at: float) -> logging.LogRecord:
    line = logging.LogRecord(name, logging.ERROR, __file__, 1, msg, (), None)
    line.created = at
    return line


def test_a_library_repeat_passes_once_per_window_and_ours_always() -> None:
    repeats = Repeats("capturer", seconds=30)
    passed = [
        repeats.filter(record("aiokafka", "Unable connect to node", t / 10)) for t in range(100)
    ]
    assert passed.count(True) == 1  # 10 s of retries: one line
    assert repeats.filter(record("aiokafka", "Unable connect to node", 31.0))  # the next window
    assert repeats.filter(record("aiokafka", "another message", 31.0))
    assert all(repeats.filter(record("capturer", "dead letter", t / 10)) for t in range(50))
