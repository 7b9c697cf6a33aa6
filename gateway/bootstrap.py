"""The gateway's composition root: the only place that wires real adapters into the gateway
process. Nothing connects here: the process connects when it runs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from prometheus_client import REGISTRY

from gateway.adapters.mariadb.control_schema import control_engine, ensure_schema
from gateway.adapters.mariadb.job_board import MariaDbJobBoard
from gateway.adapters.mariadb.phase_store import MariaDbPhaseStore
from gateway.adapters.mariadb.room_catalog import MariaDbRoomCatalog
from gateway.adapters.nginx_room_map import NginxRoomMap
from gateway.adapters.spool import HintSpool
from gateway.entrypoints.addon import Capture, Inspector, Shadow, UpstreamOnly
from gateway.entrypoints.admin_api import AdminParts, admin_app
from gateway.entrypoints.master import GatewayProcess, lean_master
from gateway.errors import ControlStoreUnavailable
from gateway.service.accounts import AccountCache
from gateway.service.control import ControlFollower
from gateway.service.metrics import SpoolCollector
from gateway.service.shadow import ShadowLedger, ShadowReads
from gateway.service.shadow_record import ShadowRecorder
from gateway.service.shipping import HintShipper
from gateway.settings import GatewaySettings
from legacy_adapters.adapters.mariadb.directory import MariaDbAccountDirectory
from legacy_adapters.adapters.mariadb.engine import make_engine
from newcore import bootstrap as newcore_bootstrap
from newcore.adapters.ops import configure_logging
from newcore.errors import Misconfigured
from newcore.settings import SettingsError


@contextmanager
def gateway(settings: GatewaySettings) -> Iterator[GatewayProcess]:
    """`chat-gateway`: the lean mitmproxy master with our addons, the control follower (and
    the room map, when this gateway publishes it), the spool and its shipper, shadow reads
    and the admin API. Raises SettingsError when there is no admin token."""
    p = settings.proxy
    if p.admin_token is None:
        raise SettingsError(
            "bad setting: MIG_GATEWAY_ADMIN_TOKEN: required (16 characters at least)"
        )
    log = configure_logging("gateway")
    monolith = make_engine(settings.database, pool_size=2)
    control = control_engine(settings.database, settings.control.db_name, pool_size=2)
    store = MariaDbPhaseStore(control)
    catalog = MariaDbRoomCatalog(monolith)
    room_map = (
        NginxRoomMap(p.room_map, p.frontdoor_pid)
        if p.room_map is not None and p.frontdoor_pid is not None
        else None
    )
    follower = ControlFollower(store, p.control_poll_s, log, room_map)
    spool = HintSpool(
        settings.spool.dir,
        settings.spool.max_bytes,
        fsync_interval_s=settings.spool.fsync_interval_s,
    )
    # Kafka, or the embedded topics (MIG_ENGINE): newcore's composition root picks.
    hints = newcore_bootstrap.hints_log(settings.engine, settings.kafka, settings.topics)
    shipper = HintShipper(
        spool, hints, batch=settings.spool.ship_batch, backoff_ms=settings.spool.backoff_ms,
        max_backoff_ms=settings.spool.max_backoff_ms,
    )  # fmt: skip
    ledger = ShadowLedger(settings.shadow.keep_differences)
    recorder = ShadowRecorder(store, ledger, settings.shadow.record_s, log)
    reads = ShadowReads(
        settings.shadow.read_api, shipper, ledger, timeout_s=settings.shadow.timeout_s,
        concurrency=settings.shadow.concurrency, log=log, sample=settings.shadow.sample,
    )  # fmt: skip
    accounts = AccountCache(MariaDbAccountDirectory(monolith))

    def spool_put(hint: Any) -> int | None:
        seq = spool.put(hint)
        shipper.notify()
        return seq

    capture = Capture(spool_put, accounts)

    def health() -> dict[str, Any]:
        state = spool.state()
        age = follower.age_s()
        return (
            follower.health()
            | capture.health()
            | {
                "ok": age is not None and age < max(5.0, 10 * p.control_poll_s),
                "spool_pending": state.pending_records,
                "lost_rooms": len(state.lost_rooms),
                "shadow_in_flight": reads.in_flight(),
            }
        )

    collector = SpoolCollector(spool.state, lambda: shipper.stats)
    REGISTRY.register(collector)
    jobs = MariaDbJobBoard(control)  # the migrator's job controls, on the same control engine
    parts = AdminParts(
        p.admin_token.get_secret_value(), store, catalog, spool, ledger, health, jobs
    )

    async def prepare() -> None:
        await asyncio.to_thread(ensure_schema, control)
        try:
            await follower.load()
        except ControlStoreUnavailable as exc:
            # Every room stays legacy until the store answers; the follower keeps asking.
            log.warning("control store unavailable at start", extra={"reason": str(exc)})

    inspector = Inspector(lambda room: follower.snapshot.phase_of(room))

    def make_master() -> Any:
        return lean_master(
            p.upstream, p.listen_host, p.port,
            [UpstreamOnly(), inspector, Shadow(reads, spool.last_seq_for), capture],
        )  # fmt: skip

    async def finish() -> None:
        await reads.close()
        await hints.close()
        spool.close()

    try:
        yield GatewayProcess(
            log, prepare, make_master, (admin_app(parts), p.admin_host, p.admin_port),
            [("control", follower.run, follower.stop), ("shipper", shipper.run, shipper.stop),
             ("shadow record", recorder.run, recorder.stop)],
            finish, (inspector.drain, lambda: inspector.in_flight, p.drain_s),
        )  # fmt: skip
    finally:
        REGISTRY.unregister(collector)
        monolith.dispose()
        control.dispose()


__all__ = ["Misconfigured", "gateway"]
