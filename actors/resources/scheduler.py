"""LeaseScheduler: the VRAM lease ledger, the one queue and a scheduler per GPU (no Ray here).

Admission on a GPU is ``free - unseen - margin``: ``free`` from the latest NVML reading,
``unseen`` the leased memory not yet visible as used (``base + leased - used``, where ``base``
is what the GPU used while it had no lease), ``margin`` the safety margin. Before anything
allocates, a lease counts in full; once its holder allocates, NVML shows it and it stops counting
twice; if another process grows, NVML shows that too. ``base`` is unknown after a restart, so
the first reading then counts all of its usage as not leased (conservative).

Requests wait in one queue ordered by priority plus aging (``aging_per_s`` points per second
waited), then arrival. Each GPU serves the first waiting request that may use it: when that
request does not fit yet, the GPU waits for it rather than letting later requests take the
memory it needs, so a large or low-priority request is not starved. Eligible GPUs are the ones
whose capacity (``total - margin``) can hold the request; a request no GPU can ever hold is
refused at once. For ``any`` the fitting GPU chosen is on the first preferred host, then the
best fit (least VRAM left over).
"""

from __future__ import annotations

import math
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from actors.probe.models import GpuReading, HostReading
from actors.resources.models import (
    EndedLease,
    LeaseGrant,
    LeaseList,
    LeaseRequest,
    LeaseStatus,
    QueuedLease,
)
from actors.resources.store import SqliteLeaseStore
from cluster.base.errors import LeaseNotFound, LeaseUnavailable
from cluster.base.settings import ResourceSettings

__all__ = ["GpuKey", "HOST_PIN", "LeaseScheduler"]

GpuKey = tuple[str, int]
Clock = Callable[[], float]
#: Share of its host tag a leased Ray task asks for: pins it, never runs out.
HOST_PIN = 0.001
_ENDED_KEPT = 1000


@dataclass
class GpuAccount:
    """One GPU's latest reading and the usage it had without leases."""

    host: str
    reading: GpuReading
    base_used_mb: int


class LeaseScheduler:
    """Grants, queues, renews, releases and expires VRAM leases.

    Args:
        settings: margin, aging, default TTL and wait, queue bound.
        store: every grant, queueing and end is committed here before a method returns.
        clock: seconds since the epoch (persisted expiry times survive a restart).
        on_grant: called with every lease granted, also the ones granted from the queue.
    """

    def __init__(
        self,
        settings: ResourceSettings,
        store: SqliteLeaseStore,
        clock: Clock,
        on_grant: Callable[[LeaseGrant], None] | None = None,
    ) -> None:
        self._settings = settings
        self._store = store
        self._clock = clock
        self._on_grant = on_grant
        self.gpus: dict[GpuKey, GpuAccount] = {}
        self.hosts: dict[str, HostReading] = {}
        self._leases: dict[str, LeaseGrant] = {}
        self._by_gpu: dict[GpuKey, dict[str, LeaseGrant]] = {}
        self._queue: dict[str, QueuedLease] = {}
        self._ended: OrderedDict[str, EndedLease] = OrderedDict()
        granted, queued = store.load()
        for lease in granted:
            self._add(lease)
        self._queue = {entry.lease_id: entry for entry in queued}
        self._seq = max((entry.seq for entry in queued), default=0) + 1

    # Readings and accounting

    def observe(self, reading: HostReading) -> list[LeaseGrant]:
        """Take a host's new reading; grant what now fits and return those grants."""
        owned_elsewhere = {a.reading.uuid for k, a in self.gpus.items() if k[0] != reading.host}
        seen: set[GpuKey] = set()
        for gpu in reading.gpus:
            if gpu.uuid in owned_elsewhere:
                continue  # one machine carrying two host tags: count its devices once
            key = (reading.host, gpu.index)
            seen.add(key)
            old = self.gpus.get(key)
            base = old.base_used_mb if old is not None and self._by_gpu.get(key) else gpu.used_mb
            self.gpus[key] = GpuAccount(reading.host, gpu, base)
        for key in [k for k in self.gpus if k[0] == reading.host and k not in seen]:
            del self.gpus[key]
        self.hosts[reading.host] = reading
        return self._dispatch()

    def leased_mb(self, key: GpuKey) -> int:
        return sum(lease.vram_mb for lease in self._by_gpu.get(key, {}).values())

    def unseen_mb(self, key: GpuKey) -> int:
        account = self.gpus[key]
        return max(0, account.base_used_mb + self.leased_mb(key) - account.reading.used_mb)

    def available_mb(self, key: GpuKey) -> int:
        """VRAM that may still be leased on ``key``: free - unseen - margin (0 if exclusive)."""
        if any(lease.exclusive for lease in self._by_gpu.get(key, {}).values()):
            return 0
        free = self.gpus[key].reading.free_mb - self.unseen_mb(key)
        return max(0, free - self._settings.safety_margin_mb)

    def leases_on(self, key: GpuKey) -> list[LeaseGrant]:
        return list(self._by_gpu.get(key, {}).values())

    # Lease operations

    def request(self, request: LeaseRequest) -> LeaseGrant | QueuedLease:
        """Grant ``request`` now, or queue it behind the requests served before it.

        Raises:
            LeaseUnavailable: no visible GPU could ever hold it, the queue is full, or it may
                not wait (``max_wait_s=0``) and does not fit now.
        """
        self._check_capacity(request)
        if len(self._queue) >= self._settings.max_queue:
            raise LeaseUnavailable(f"the queue is full ({self._settings.max_queue} waiting)")
        now = self._clock()
        wait = request.max_wait_s
        wait = self._settings.default_max_wait_s if wait is None else wait
        entry = QueuedLease(
            lease_id=uuid.uuid4().hex,
            request=request,
            requested_at=now,
            wait_until=now + wait,
            seq=self._seq,
        )
        self._seq += 1
        self._queue[entry.lease_id] = entry
        self._dispatch()
        if entry.lease_id in self._leases:
            return self._leases[entry.lease_id]
        if wait == 0:
            del self._queue[entry.lease_id]
            raise LeaseUnavailable(f"no GPU has {request.vram_mb} MiB free now (max_wait_s=0)")
        self._store.queued(entry)
        return self._queued_view(entry.lease_id, now)

    def release(self, lease_id: str, reason: str = "released by its owner") -> EndedLease:
        """End a granted lease (``released``) or withdraw a queued request (``cancelled``)."""
        if lease_id in self._leases:
            ended = self._end(lease_id, "released", reason)
        elif lease_id in self._queue:
            ended = self._end(lease_id, "cancelled", reason)
        else:
            raise LeaseNotFound(lease_id)
        self._dispatch()
        return ended

    def heartbeat(self, lease_id: str, used: bool = False) -> LeaseStatus:
        """Renew a granted lease's TTL (and its last use); a queued request is left as is."""
        now = self._clock()
        lease = self._leases.get(lease_id)
        if lease is None:
            if lease_id in self._queue:
                return self._queued_view(lease_id, now)
            raise LeaseNotFound(lease_id)
        update: dict[str, float] = {"expires_at": now + lease.ttl_s}
        if used:
            update["last_used_at"] = now
        renewed = lease.model_copy(update=update)
        self._leases[lease_id] = renewed
        self._by_gpu[(renewed.host, renewed.gpu_index)][lease_id] = renewed
        self._store.renewed(renewed)
        return renewed

    def sweep(self) -> list[EndedLease]:
        """Expire leases past their TTL and requests past their wait; grant what then fits."""
        now = self._clock()
        ended = [
            self._end(lease.lease_id, "expired", f"no heartbeat within {lease.ttl_s:g} s")
            for lease in list(self._leases.values())
            if lease.expires_at <= now
        ]
        ended += [
            self._end(entry.lease_id, "timed_out", "no GPU could hold it within max_wait_s")
            for entry in list(self._queue.values())
            if entry.wait_until <= now
        ]
        if ended:
            self._dispatch()
        return ended

    def get(self, lease_id: str) -> LeaseStatus:
        """A granted lease, a queued request with its position, or a recently ended lease."""
        if lease_id in self._leases:
            return self._leases[lease_id]
        if lease_id in self._queue:
            return self._queued_view(lease_id, self._clock())
        if lease_id in self._ended:
            return self._ended[lease_id]
        raise LeaseNotFound(lease_id)

    def leases(self) -> LeaseList:
        now = self._clock()
        order = self._ordered(now)
        queued = [self._view(entry, position, now) for position, entry in enumerate(order, 1)]
        return LeaseList(granted=list(self._leases.values()), queued=queued)

    def fits_now(self, vram_mb: int, host: str = "any") -> bool:
        """Whether some GPU on ``host`` has ``vram_mb`` available to lease now."""
        return any(self.available_mb(k) >= vram_mb for k in self.gpus if host in ("any", k[0]))

    # Internals

    def _check_capacity(self, request: LeaseRequest) -> None:
        if not self.gpus:
            errors = "; ".join(
                f"{host}: {r.gpu_error}" for host, r in sorted(self.hosts.items()) if r.gpu_error
            )
            raise LeaseUnavailable("no NVIDIA devices visible" + (f" ({errors})" if errors else ""))
        if not self._eligible(request):
            raise LeaseUnavailable(
                f"no visible GPU matching host={request.host!r} gpu={request.gpu!r} can hold "
                f"{request.vram_mb} MiB (capacity is total minus the "
                f"{self._settings.safety_margin_mb} MiB safety margin)"
            )

    def _eligible(self, request: LeaseRequest) -> list[GpuKey]:
        margin = self._settings.safety_margin_mb
        return [
            key
            for key, account in self.gpus.items()
            if request.host in ("any", key[0])
            and request.gpu in ("any", key[1], account.reading.uuid)
            and account.reading.total_mb - margin >= request.vram_mb
        ]

    def _admits(self, key: GpuKey, request: LeaseRequest) -> bool:
        if request.exclusive and self._by_gpu.get(key):
            return False
        return self.available_mb(key) >= request.vram_mb

    def _ordered(self, now: float) -> list[QueuedLease]:
        aging = self._settings.aging_per_s
        return sorted(
            self._queue.values(),
            key=lambda e: (-(e.request.priority + aging * (now - e.requested_at)), e.seq),
        )

    def _dispatch(self) -> list[LeaseGrant]:
        granted: list[LeaseGrant] = []
        while self._queue:
            now = self._clock()
            blocked: set[GpuKey] = set()
            for entry in self._ordered(now):
                eligible = [k for k in self._eligible(entry.request) if k not in blocked]
                fitting = [k for k in eligible if self._admits(k, entry.request)]
                if fitting:
                    granted.append(self._grant(entry, self._place(entry.request, fitting), now))
                    break
                blocked.update(eligible)  # these GPUs wait for this request
            else:
                break
        return granted

    def _place(self, request: LeaseRequest, fitting: list[GpuKey]) -> GpuKey:
        prefs = request.prefer_hosts

        def rank(key: GpuKey) -> tuple[int, int, GpuKey]:
            host_rank = prefs.index(key[0]) if key[0] in prefs else len(prefs)
            return host_rank, self.available_mb(key) - request.vram_mb, key

        return min(fitting, key=rank)

    def _grant(self, entry: QueuedLease, key: GpuKey, now: float) -> LeaseGrant:
        request, reading = entry.request, self.gpus[key].reading
        ttl = request.ttl_s or self._settings.default_ttl_s
        share = math.ceil(request.vram_mb / reading.total_mb * 10_000) / 10_000
        lease = LeaseGrant(
            lease_id=entry.lease_id,
            owner=request.owner,
            vram_mb=request.vram_mb,
            priority=request.priority,
            exclusive=request.exclusive,
            host=key[0],
            gpu_index=key[1],
            gpu_uuid=reading.uuid,
            num_gpus=1.0 if request.exclusive else min(1.0, max(0.0001, share)),
            resources={key[0]: HOST_PIN},
            requested_at=entry.requested_at,
            granted_at=now,
            ttl_s=ttl,
            expires_at=now + ttl,
            last_used_at=now,
            model_name=request.model_name,
            unload_endpoint=request.unload_endpoint,
        )
        del self._queue[entry.lease_id]
        self._add(lease)
        self._store.granted(lease)
        if self._on_grant is not None:
            self._on_grant(lease)
        return lease

    def _add(self, lease: LeaseGrant) -> None:
        self._leases[lease.lease_id] = lease
        self._by_gpu.setdefault((lease.host, lease.gpu_index), {})[lease.lease_id] = lease

    def _end(self, lease_id: str, state: str, reason: str) -> EndedLease:
        lease = self._leases.pop(lease_id, None)
        if lease is not None:
            self._by_gpu[(lease.host, lease.gpu_index)].pop(lease_id, None)
            owner = lease.owner
        else:
            owner = self._queue.pop(lease_id).request.owner
        ended = EndedLease.model_validate(
            {
                "state": state,
                "lease_id": lease_id,
                "owner": owner,
                "ended_at": self._clock(),
                "reason": reason,
            }
        )
        self._store.ended(ended)
        self._ended[lease_id] = ended
        while len(self._ended) > _ENDED_KEPT:
            self._ended.popitem(last=False)
        return ended

    def _queued_view(self, lease_id: str, now: float) -> QueuedLease:
        order = self._ordered(now)
        position = next(i for i, e in enumerate(order, 1) if e.lease_id == lease_id)
        return self._view(self._queue[lease_id], position, now)

    def _view(self, entry: QueuedLease, position: int, now: float) -> QueuedLease:
        aging = self._settings.aging_per_s
        effective = entry.request.priority + aging * (now - entry.requested_at)
        return entry.model_copy(update={"position": position, "effective_priority": effective})
