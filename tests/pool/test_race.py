"""The race, for real: many therapists accept the same requests at the same moment, in one process and across
several server processes sharing Redis and PostgreSQL. And proof that the check can fail."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import aiohttp
import pytest

from benchmarks._cluster import Cluster
from conftest import PASSWORD, REDIS_URL, TEST_KEYS, RunningServer, Sock, User, Users, deposit_at
from core.db import Database
from pool import claim
from pool.claims import ClaimResult, MemoryClaimStore
from pool.context import PoolContext
from pool.dashboard import refresh_dashboard
from pool.models import PoolRequest, RequestStatus
from pool.transitions import move

from race import check_race, race, recorded_offers

RACERS = 8
REQUESTS = 12

async def open_therapists(server_urls: list[str], users: list[User], sockets) -> list[tuple[User, Sock]]:
    socks = []
    for n, user in enumerate(users):
        sock = await sockets(server_urls[n % len(server_urls)], user, f"t{n}")
        assert (await sock.call("pool.set_availability", {"available": True}))["ok"]
        socks.append((user, sock))
    return socks

async def test_one_winner_per_request_in_one_process(server: RunningServer, users: Users, sockets) -> None:
    therapists = await open_therapists([server.url], [await users.therapist() for _ in range(RACERS)], sockets)
    clients = [await sockets(server, await users.client()) for _ in range(REQUESTS)]
    results = await race(therapists, clients)
    check_race(results, await recorded_offers(server.services.settings.effective_database_url, [r.request_id for r in results]))
    assert len({r.winners[0] for r in results}) > 1, "different therapists win different requests"

class NonAtomicClaimStore(MemoryClaimStore):
    """Test-only: looks, yields to the event loop, then writes. Two racers can both see the round free."""

    async def claim_round(self, request_id: int, round: int, therapist_id: int, ttl_s: float, hold_s: float) -> ClaimResult:
        free = self._live(self._rounds, (request_id, round)) is None
        await asyncio.sleep(0.005)
        if not free:
            return ClaimResult.taken
        self._rounds[(request_id, round)] = (f"therapist:{therapist_id}", self.clock.monotonic() + ttl_s)
        return ClaimResult.won

class CarelessRecorder(claim.Recorder):
    """Test-only: records the offer without checking the round is still open (no second line of defence)."""

    async def record(self, ctx: PoolContext, request_id: int, round: int, therapist_id: int) -> PoolRequest:
        async with ctx.db.transaction() as session:
            fresh = await session.get(PoolRequest, request_id)
            assert fresh is not None
            fresh.status, fresh.offered_to, fresh.offer_expires_at = RequestStatus.offered, therapist_id, ctx.clock.now()
        return fresh

async def test_the_race_check_detects_a_non_atomic_claim(
    server: RunningServer, users: Users, sockets, monkeypatch: pytest.MonkeyPatch
) -> None:
    server.services.pool.claims = NonAtomicClaimStore(server.services.clock)
    monkeypatch.setattr(claim, "RECORDER", CarelessRecorder())
    therapists = await open_therapists([server.url], [await users.therapist() for _ in range(RACERS)], sockets)
    clients = [await sockets(server, await users.client()) for _ in range(3)]
    results = []
    for client in clients:
        results += await race(therapists, [client])
        # A double winner the database never recorded is not freed by the withdrawal: put every dashboard back.
        for user, _ in therapists:
            await refresh_dashboard(server.services.pool, user.id)
    assert any(len(r.winners) > 1 for r in results), "the non-atomic claim produced a double winner"
    with pytest.raises(AssertionError, match="winners"):
        check_race(results, await recorded_offers(server.services.settings.effective_database_url,
                                                  [r.request_id for r in results]))

async def test_database_refuses_a_second_offer_for_a_round(server: RunningServer, users: Users, sockets) -> None:
    """Even if the claim store forgot (a restart in embedded mode), a decided round cannot be re-offered."""
    therapists = await open_therapists([server.url], [await users.therapist() for _ in range(2)], sockets)
    client = await sockets(server, await users.client())
    request_id = (await client.call("pool.request", {"reason": "x"}))["request"]["id"]
    assert (await therapists[0][1].call("pool.accept", {"request_id": request_id}))["ok"]
    server.services.pool.claims = MemoryClaimStore(server.services.clock)  # the in-memory claims are lost
    async with server.services.db.session() as session:
        req = await session.get(PoolRequest, request_id)
    assert req is not None
    ack_ctx = server.services.pool
    await ack_ctx.claims.claim_round(req.id, req.round, therapists[1][0].id, 60, 60)
    with pytest.raises(Exception) as err:
        await claim.RECORDER.record(ack_ctx, req.id, req.round, therapists[1][0].id)
    assert getattr(err.value, "code", None) == "taken"
    async with server.services.db.transaction() as session:
        fresh = await session.get(PoolRequest, request_id)
        assert fresh is not None and fresh.offered_to == therapists[0][0].id
        assert not await move(session, PoolRequest(id=req.id, round=req.round, status=RequestStatus.open), RequestStatus.offered)

@pytest.mark.slow
async def test_one_winner_per_request_across_processes_on_redis(postgres_url: str, redis_prefix: str, tmp_path: Path, sockets) -> None:
    cluster = Cluster(processes=3, database_url=postgres_url, redis_url=REDIS_URL, redis_prefix=redis_prefix,
                      workdir=tmp_path, secret_key="race-secret-" + "y" * 32, encryption_keys=TEST_KEYS)
    async with cluster, aiohttp.ClientSession() as http:
        async def register(path: str, body: dict, url: str) -> User:
            async with http.post(f"{url}{path}", json=body) as resp:
                data = await resp.json()
                assert resp.status == 201, data
            return User(data["user"]["id"], body["email"], data["token"], data["user"]["role"])

        therapist_users = []
        for n in range(RACERS):
            therapist_users.append(await register("/api/auth/apply", {
                "email": f"t{n}-{uuid.uuid4().hex[:6]}@example.org", "password": PASSWORD, "display_name": f"T{n}",
                "qualifications": "MSc", "registration_body": "BACP", "registration_number": str(n),
                "insurance_provider": "X", "insurance_expiry": "2031-01-01"}, cluster.urls[n % 3]))
        db = Database(postgres_url)
        try:
            from sqlalchemy import update

            from accounts.models import ApplicationStatus, TherapistProfile

            async with db.transaction() as session:
                await session.execute(update(TherapistProfile).values(status=ApplicationStatus.approved))
        finally:
            await db.dispose()
        therapists = await open_therapists(cluster.urls, therapist_users, sockets)
        clients = []
        for n in range(REQUESTS):
            user = await register("/api/auth/register", {"email": f"c{n}-{uuid.uuid4().hex[:6]}@example.org",
                                  "password": PASSWORD, "display_name": f"C{n}", "date_of_birth": "1990-01-01"},
                                  cluster.urls[n % 3])
            await deposit_at(postgres_url, user.id)
            clients.append(await sockets(cluster.urls[(n + 1) % 3], user, f"c{n}"))
        results = await race(therapists, clients)
        check_race(results, await recorded_offers(postgres_url, [r.request_id for r in results]))
        for sock in [s for _, s in therapists] + clients:
            await sock.close()
