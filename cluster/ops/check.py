"""``aisys check``: a short end-to-end check of a running system, one timed line per step.

Each step drives one path that clients or legacy agents use, and reads back what it wrote:

======================================  ========================================================
``security.token``                      an agent identity for this run (made through Ray, as
                                        ``aisys token agent`` does); a token issued over HTTP,
                                        verified by ``/security/verify`` and against the JWKS
``registry.http``                       register, look up, discover by capability, deregister
``legacy.service_registry@<host>``      ``register_agent`` then ``get_agent_endpoint`` (7100)
``legacy.system_digital_twin@<host>``   ``REGISTER`` then ``DISCOVER`` (7120; each port once)
``core.request``                        a request through the coordinator to a throw-away
                                        ZeroMQ agent this process starts, and its reply
``errors.publish``                      an error event published and queried back
``resources.lease``                     a 1 MiB VRAM lease granted and released (refused with
                                        ``LeaseUnavailable`` when no host has a GPU)
``observability.metrics``               a scrape that shows every host up
``cleanup``                             everything above removed; the token revoked
======================================  ========================================================

Lines read ``PASS <step> <ms>ms``, ``FAIL <step> <ms>ms: <reason>`` or ``SKIP <step>: <why>``.
Steps after a failure still run unless they need the token ``security.token`` failed to get.
Names are ``aisys-check-<random>``, so checks run side by side do not collide. The error event
stays: the ErrorBus stream is append-only; it is filed under agent ``aisys-check`` at severity
``info``.

Run it on the head: the throw-away agent binds the head's ``node_ip`` (127.0.0.1 when none is
set), which the CoreOrchestrator on the head reaches.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal, TextIO, TypeVar

import httpx
import ray
import zmq
from prometheus_client.parser import text_string_to_metric_families
from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError

from actors.errors.models import ErrorEvent, ErrorPage, PublishResult
from actors.registry.models import AgentRecord, Registration
from actors.resources.models import EndedLease, GpuList, LeaseGrant, LeaseRequest, LeaseStatus
from actors.security.models import Jwks, NewAgent, Scope, TokenPair, VerifyResponse
from actors.security.tokens import TokenVerifier
from cluster.base.constants import APP_ROUTE_PREFIXES
from cluster.base.errors import AisysError, CheckFailed
from cluster.base.settings import LegacyService, Settings
from cluster.ops import identity
from cluster.ops._check_agent import CheckAgent
from deployments.core.models import RequestState, RequestStatus, SubmitReceipt

__all__ = ["CheckReport", "StepResult", "run_check"]

#: What the check's identity may do: everything its steps write, nothing more (no admin).
CHECK_SCOPES = (
    Scope.READ,
    Scope.REGISTRY_WRITE,
    Scope.REQUESTS_SUBMIT,
    Scope.RESOURCES_LEASE,
    Scope.ERRORS_PUBLISH,
)
#: Agent name of the check's error events: one name, so the per-agent error series stay few.
ERROR_AGENT = "aisys-check"
#: A port in every fake registration; nothing is reached there.
_FAKE_PORT = 9
_FINISHED = (RequestState.SUCCEEDED, RequestState.FAILED, RequestState.CANCELLED)
_LEASE_STATUS: TypeAdapter[LeaseStatus] = TypeAdapter(LeaseStatus)
_Model = TypeVar("_Model", bound=BaseModel)
_T = TypeVar("_T")


class StepResult(BaseModel):
    """One step's outcome; ``detail`` is the reason of a failure or skip."""

    name: str
    outcome: Literal["pass", "fail", "skip"]
    elapsed_ms: float
    detail: str = ""

    def line(self) -> str:
        if self.outcome == "skip":
            return f"SKIP {self.name}: {self.detail}"
        timing = f"{self.name} {self.elapsed_ms:.0f}ms"
        if self.outcome == "fail":
            return f"FAIL {timing}: {self.detail}"
        return f"PASS {timing}" + (f" ({self.detail})" if self.detail else "")


class CheckReport(BaseModel):
    steps: list[StepResult]

    @property
    def passed(self) -> bool:
        return all(step.outcome != "fail" for step in self.steps)

    @property
    def failed(self) -> list[str]:
        return [step.name for step in self.steps if step.outcome == "fail"]


class _Deadline:
    """A step's time budget; every network wait is bounded by what is left of it."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._end = time.monotonic() + seconds

    def left(self, cap: float = 30.0) -> float:
        left = self._end - time.monotonic()
        if left <= 0:
            raise CheckFailed(f"not done within the step's {self.seconds:g} s")
        return min(left, cap)

    def poll(self, probe: Callable[[], _T | None], waiting_for: str) -> _T:
        """Call ``probe`` until it returns something, at most until the deadline."""
        while True:
            found = probe()
            if found is not None:
                return found
            if self._end - time.monotonic() < 0.05:
                raise CheckFailed(f"{waiting_for}: not seen within {self.seconds:g} s")
            time.sleep(0.05)


class _LegacyReply(BaseModel):
    """The fields of the legacy replies the check reads (section 1.3 of docs/legacy-protocol.md)."""

    model_config = ConfigDict(extra="allow")

    status: str
    error: str | None = None
    message: str | None = None
    host: str | None = None
    port: int | None = None
    payload: dict[str, Any] | None = None


class _AgentList(BaseModel):
    agents: list[AgentRecord]


@dataclass(frozen=True)
class _Step:
    name: str
    run: Callable[[_Deadline], str]
    needs_token: bool = True
    skip: str | None = None


def run_check(settings: Settings, out: TextIO, step_timeout_s: float = 30.0) -> CheckReport:
    """Run every step against the running system, printing one line per step to ``out``.

    Args:
        step_timeout_s: time budget of each step (and of each removal in the cleanup).

    Returns:
        The report; :attr:`CheckReport.passed` is False when any step failed.
    """
    check = _Check(settings, step_timeout_s)
    results: list[StepResult] = []
    started = time.monotonic()
    out.write(f"{check.name} against {check.base_url}\n")

    def record(result: StepResult) -> None:
        results.append(result)
        out.write(result.line() + "\n")
        out.flush()

    try:
        for step in check.steps():
            record(check.execute(step))
    finally:
        # Also after Ctrl-C: what a killed check leaves behind only expires with its TTLs.
        record(check.execute(_Step("cleanup", check.cleanup, needs_token=False)))
        check.close()
    report = CheckReport(steps=results)
    elapsed = time.monotonic() - started
    if report.passed:
        out.write(f"check passed: {len(results)} steps in {elapsed:.1f} s\n")
    else:
        out.write(
            f"check FAILED: {', '.join(report.failed)} ({len(report.failed)} of {len(results)} "
            "steps failed)\n"
        )
    return report


class _Check:
    """The state one run shares between its steps, and what it must remove at the end."""

    def __init__(self, settings: Settings, step_timeout_s: float) -> None:
        self._settings = settings
        self._timeout_s = step_timeout_s
        self.name = f"aisys-check-{secrets.token_hex(4)}"
        head = settings.hosts[settings.head_host]
        self._ip = head.node_ip or "127.0.0.1"
        tls = settings.ray
        # Over HTTPS, the name the certificate carries: the head's address.
        host = self._ip if tls.tls_certfile is not None else "127.0.0.1"
        self.base_url = f"{tls.http_scheme}://{host}:{settings.ports.http}"
        self._http = httpx.Client(base_url=self.base_url, verify=tls.http_verify)
        self._zmq = zmq.Context()
        self._token: TokenPair | None = None
        self._dispatched = False
        self._cleanups: list[tuple[str, Callable[[_Deadline], None]]] = []

    def close(self) -> None:
        self._http.close()
        self._zmq.destroy(linger=0)

    # -- running -------------------------------------------------------------------------

    def steps(self) -> list[_Step]:
        steps = [
            _Step("security.token", self._security_token, needs_token=False),
            _Step("registry.http", self._registry_http),
        ]
        steps += self._legacy_steps()
        steps += [
            _Step("core.request", self._core_request),
            _Step("errors.publish", self._errors_publish),
            _Step("resources.lease", self._resources_lease),
            _Step("observability.metrics", self._observability_metrics),
        ]
        return steps

    def execute(self, step: _Step) -> StepResult:
        if step.skip is None and step.needs_token and self._token is None:
            step = _Step(step.name, step.run, skip="needs the token security.token did not get")
        if step.skip is not None:
            return StepResult(name=step.name, outcome="skip", elapsed_ms=0, detail=step.skip)
        start = time.monotonic()
        try:
            detail = step.run(_Deadline(self._timeout_s))
        except AisysError as exc:
            outcome, detail = "fail", exc.message if isinstance(exc, CheckFailed) else str(exc)
        except (
            httpx.HTTPError,
            zmq.ZMQError,
            ray.exceptions.RayError,
            ValidationError,
            OSError,
        ) as exc:
            # Step boundary: the failure is this step's result; the next steps still run.
            outcome, detail = "fail", f"{type(exc).__name__}: {exc}"
        else:
            outcome = "pass"
        elapsed_ms = (time.monotonic() - start) * 1000
        return StepResult(name=step.name, outcome=outcome, elapsed_ms=elapsed_ms, detail=detail)

    def cleanup(self, deadline: _Deadline) -> str:
        """Undo what the steps created, newest first; every action runs even if one fails."""
        problems = []
        while self._cleanups:
            what, undo = self._cleanups.pop()
            try:
                # Each action gets a full budget: one slow removal must not skip the others.
                undo(_Deadline(deadline.seconds))
            except (AisysError, httpx.HTTPError, zmq.ZMQError, ray.exceptions.RayError) as exc:
                problems.append(f"{what}: {exc}")
        if problems:
            raise CheckFailed("; ".join(problems))
        return ""

    # -- HTTP ----------------------------------------------------------------------------

    def _call(
        self,
        deadline: _Deadline,
        method: str,
        path: str,
        *,
        expect: tuple[int, ...] = (200,),
        auth: str | None | Literal[False] = None,
        **kwargs: Any,
    ) -> httpx.Response:
        """One request to the Serve ingress, with the check's token unless ``auth`` says."""
        token = (self._token.access_token if self._token else None) if auth is None else auth
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        try:
            response = self._http.request(
                method, path, headers=headers, timeout=deadline.left(), **kwargs
            )
        except httpx.TransportError as exc:
            raise CheckFailed(f"{method} {path}: {type(exc).__name__}: {exc}") from exc
        if response.status_code not in expect:
            raise CheckFailed(
                f"{method} {path} answered {response.status_code}: {_reason(path, response)}"
            )
        return response

    def _get(self, model: type[_Model], deadline: _Deadline, path: str, **kw: Any) -> _Model:
        return model.model_validate_json(self._call(deadline, "GET", path, **kw).content)

    def _register(self, deadline: _Deadline, registration: Registration) -> AgentRecord:
        # Removed at the end even when a later part of the step fails.
        self._cleanups.append(
            (
                f"deregister {registration.agent_id}",
                partial(self._deregister, registration.agent_id),
            )
        )
        body = registration.model_dump(mode="json")
        response = self._call(deadline, "POST", "/core/agents", json=body)
        return AgentRecord.model_validate_json(response.content)

    def _deregister(self, agent_id: str, deadline: _Deadline) -> None:
        self._call(deadline, "DELETE", f"/core/agents/{agent_id}", expect=(204, 404))

    def _fake_registration(self, agent_id: str, capability: str, port: int) -> Registration:
        # A TTL check, so a registration a killed check leaves behind removes itself.
        return Registration(
            agent_id=agent_id,
            agent_type="aisys-check",
            host=self._ip,
            port=port,
            capabilities=[capability],
            tags=["aisys-check"],
            ttl_s=60,
            deregister_critical_after_s=60,
        )

    # -- steps ---------------------------------------------------------------------------

    def _security_token(self, deadline: _Deadline) -> str:
        created = identity.create_agent(
            self._settings, NewAgent(agent_id=self.name, scopes=list(CHECK_SCOPES))
        )
        self._cleanups.append(("remove the check's identity", self._forget_identity))
        grant = {
            "grant_type": "client_credentials",
            "client_id": self.name,
            "client_secret": created.client_secret,
        }
        issued = self._call(deadline, "POST", "/security/token", json=grant, auth=False)
        pair = TokenPair.model_validate_json(issued.content)
        self._cleanups.append(("revoke the check's token", partial(self._revoke, pair)))
        missing = {s.value for s in CHECK_SCOPES} - set(pair.scope.split())
        if missing:
            raise CheckFailed(f"the token lacks {sorted(missing)} {pair.note}".strip())
        verified = self._get(
            VerifyResponse, deadline, "/security/verify", auth=pair.access_token
        ).claims
        if (verified.sub, verified.kind) != (self.name, "agent"):
            raise CheckFailed(
                f"/security/verify returned claims of {verified.sub} ({verified.kind})"
            )
        jwks = self._get(Jwks, deadline, "/security/.well-known/jwks.json", auth=False)
        security = self._settings.security
        verifier = TokenVerifier(security.issuer, security.audience, security.leeway_s)
        verifier.update(jwks.keys, {})
        if verifier.verify(pair.access_token).jti != verified.jti:
            raise CheckFailed("the JWKS check and /security/verify saw different tokens")
        self._token = pair
        return "verified by /security/verify and the JWKS"

    def _registry_http(self, deadline: _Deadline) -> str:
        agent_id = capability = f"{self.name}-http"
        registration = self._fake_registration(agent_id, capability, _FAKE_PORT)
        self._register(deadline, registration)
        record = self._get(AgentRecord, deadline, f"/core/agents/{agent_id}")
        if (record.host, record.port) != (registration.host, registration.port):
            raise CheckFailed(f"lookup returned {record.host}:{record.port}")
        found = self._get(_AgentList, deadline, "/core/agents", params={"capability": capability})
        if [a.agent_id for a in found.agents] != [agent_id]:
            raise CheckFailed(f"discovery by capability found {[a.agent_id for a in found.agents]}")
        self._deregister(agent_id, deadline)
        self._call(deadline, "GET", f"/core/agents/{agent_id}", expect=(404,))
        return ""

    def _legacy_steps(self) -> list[_Step]:
        gateway = self._settings.legacy_gateway
        wildcard = gateway.bind in ("0.0.0.0", "::", "*")
        steps = []
        seen: set[str] = set()
        # One gateway deployment per host: the legacy host and the error-bus bridge's host. On
        # one machine both hosts list 7120 and one of them serves it: it is checked once.
        for host in dict.fromkeys([gateway.host, self._settings.errors.bridge.host]):
            ip = (self._settings.hosts[host].node_ip or "127.0.0.1") if wildcard else gateway.bind
            ports = gateway.ports.get(host, {})
            for service, run in (
                (LegacyService.SERVICE_REGISTRY, self._legacy_service_registry),
                (LegacyService.SYSTEM_DIGITAL_TWIN, self._legacy_digital_twin),
            ):
                address = f"tcp://{ip}:{ports.get(service)}"
                if service not in ports or address in seen:
                    continue
                seen.add(address)
                delegate = gateway.delegate_to.get(service)
                skip = f"delegated to the legacy agent at {delegate}" if delegate else None
                name = f"legacy.{service.value}@{host}"
                steps.append(_Step(name, partial(run, host, address), skip=skip))
        return steps

    def _legacy(self, deadline: _Deadline, address: str, frame: dict[str, Any]) -> _LegacyReply:
        """One REQ round trip, as a legacy agent makes it (a fresh socket, a bounded wait)."""
        socket = self._zmq.socket(zmq.REQ)
        socket.setsockopt(zmq.LINGER, 0)
        try:
            socket.connect(address)
            socket.send_json(frame)
            if not socket.poll(int(deadline.left(cap=5) * 1000)):
                raise CheckFailed(f"no reply from {address} to {next(iter(frame.values()))!r}")
            return _LegacyReply.model_validate_json(socket.recv())
        finally:
            socket.close(linger=0)

    def _legacy_service_registry(self, host: str, address: str, deadline: _Deadline) -> str:
        agent_id = f"{self.name}-sr-{host}"
        self._cleanups.append((f"deregister {agent_id}", partial(self._deregister, agent_id)))
        data = {
            "agent_id": agent_id,
            "agent_type": "aisys-check",
            "host": self._ip,
            "port": _FAKE_PORT,
        }
        frame = {"action": "register_agent", "registration_data": data}
        reply = self._legacy(deadline, address, frame)
        if reply.status != "success":
            raise CheckFailed(f"register_agent on {address} answered {reply.model_dump()}")
        lookup = {"action": "get_agent_endpoint", "agent_name": agent_id}

        def endpoint() -> _LegacyReply | None:
            found = self._legacy(deadline, address, lookup)
            return found if found.status == "success" else None

        found = deadline.poll(endpoint, f"get_agent_endpoint of {agent_id} on {address}")
        if (found.host, found.port) != (self._ip, _FAKE_PORT):
            raise CheckFailed(f"get_agent_endpoint returned {found.host}:{found.port}")
        # The gateway answered from its view; the registry itself must hold the record too.
        self._get(AgentRecord, deadline, f"/core/agents/{agent_id}")
        return address

    def _legacy_digital_twin(self, host: str, address: str, deadline: _Deadline) -> str:
        name = f"{self.name}-sdt-{host}"
        self._cleanups.append((f"deregister {name}", partial(self._deregister, name)))
        register = {"command": "REGISTER", "payload": {"name": name, "port": _FAKE_PORT}}
        reply = self._legacy(deadline, address, register)
        if reply.status != "SUCCESS":
            raise CheckFailed(f"REGISTER on {address} answered {reply.model_dump()}")
        discover = {"command": "DISCOVER", "payload": {"name": name}}

        def discovered() -> _LegacyReply | None:
            found = self._legacy(deadline, address, discover)
            return found if found.status == "SUCCESS" else None

        found = deadline.poll(discovered, f"DISCOVER of {name} on {address}")
        if (found.payload or {}).get("port") != _FAKE_PORT:
            raise CheckFailed(f"DISCOVER returned {found.payload}")
        return address

    def _core_request(self, deadline: _Deadline) -> str:
        try:
            agent = CheckAgent(self._ip).start()
        except zmq.ZMQError as exc:
            raise CheckFailed(
                f"cannot bind the throw-away agent on {self._ip} ({exc}); run `aisys check` on "
                f"the head ({self._settings.head_host})"
            ) from exc
        self._cleanups.append(("stop the throw-away agent", lambda _: agent.stop()))
        capability = self.name  # unique: no other agent can take the request
        self._register(deadline, self._fake_registration(self.name, capability, agent.port))
        nonce = secrets.token_hex(8)
        body = {"type": "text", "data": nonce, "capability": capability}
        submitted = self._call(deadline, "POST", "/core/requests", json=body, expect=(202,))
        request_id = SubmitReceipt.model_validate_json(submitted.content).request_id

        def finished() -> RequestStatus | None:
            wait_s = max(0.0, min(deadline.left() - 1.0, 25.0))
            path = f"/core/requests/{request_id}"
            status = self._get(RequestStatus, deadline, path, params={"wait_s": wait_s})
            return status if status.state in _FINISHED else None

        status = deadline.poll(finished, f"request {request_id} to finish")
        self._dispatched = status.downstream is not None
        if status.state is not RequestState.SUCCEEDED:
            raise CheckFailed(f"request {request_id} {status.state.value}: {status.error}")
        echo = status.result.data if status.result else None
        if status.downstream != self.name or echo != {"echo": nonce, "task_id": _task_id(agent)}:
            raise CheckFailed(f"request went to {status.downstream} and returned {echo}")
        return f"agent at {self._ip}:{agent.port}"

    def _errors_publish(self, deadline: _Deadline) -> str:
        event = ErrorEvent(
            agent=ERROR_AGENT,
            host=self._settings.tag_of(self._settings.head_host),
            error_type="aisys_check",
            severity="info",
            message=f"aisys check {self.name}: a test event",
            correlation_id=self.name,
        )
        body = event.model_dump(mode="json")
        result = PublishResult.model_validate_json(
            self._call(deadline, "POST", "/errors/", json=body).content
        )
        if result.accepted != [event.id] or result.stored != 1:
            raise CheckFailed(f"publish returned {result.model_dump()} (NATS unreachable?)")
        query = {"agent": ERROR_AGENT, "text": self.name, "limit": 10}

        def stored() -> int | None:
            page = self._get(ErrorPage, deadline, "/errors/", params=query)
            return next((item.seq for item in page.items if item.event.id == event.id), None)

        seq = deadline.poll(stored, f"event {event.id} in the ErrorBus index")
        return f"stream seq {seq}"

    def _resources_lease(self, deadline: _Deadline) -> str:
        gpus = self._get(GpuList, deadline, "/resources/gpus")
        request = LeaseRequest(owner=self.name, vram_mb=1, max_wait_s=0, ttl_s=60)
        body = request.model_dump(mode="json")
        if not gpus.gpus:
            refused = self._call(deadline, "POST", "/resources/leases", json=body, expect=(409,))
            if refused.json().get("error") != "LeaseUnavailable":
                raise CheckFailed(f"a lease with no GPU was refused with {refused.text[:300]}")
            return "no GPU on any host: refused with LeaseUnavailable, as it must be"
        response = self._call(deadline, "POST", "/resources/leases", json=body, expect=(201,))
        grant = LeaseGrant.model_validate_json(response.content)
        path = f"/resources/leases/{grant.lease_id}"
        self._cleanups.append(("release the lease", partial(self._release, path)))
        held = _LEASE_STATUS.validate_json(self._call(deadline, "GET", path).content)
        ended = _LEASE_STATUS.validate_json(self._call(deadline, "DELETE", path).content)
        if (
            held.state != "granted"
            or not isinstance(ended, EndedLease)
            or ended.state != "released"
        ):
            raise CheckFailed(f"lease {grant.lease_id} was {held.state}, then {ended.state}")
        source = next(
            (g.source for g in gpus.gpus if (g.host, g.index) == (grant.host, grant.gpu_index)),
            "nvml",
        )
        mark = "" if source == "nvml" else f" (source {source}: not a measured device)"
        return f"granted on {grant.host} GPU {grant.gpu_index}, released{mark}"

    def _observability_metrics(self, deadline: _Deadline) -> str:
        tags = sorted({profile.tag for profile in self._settings.hosts.values()})

        def all_up() -> int | None:
            text = self._call(deadline, "GET", "/observability/metrics").text
            families = list(text_string_to_metric_families(text))
            up = {
                s.labels.get("host"): s.value
                for family in families
                for s in family.samples
                if s.name == "aisys_host_up"
            }
            return len(families) if all(up.get(tag) == 1 for tag in tags) else None

        count = deadline.poll(all_up, f"aisys_host_up 1 for hosts {tags}")
        return f"{count} metric families, every host up"

    # -- cleanup -------------------------------------------------------------------------

    def _revoke(self, pair: TokenPair, deadline: _Deadline) -> None:
        for token in (pair.access_token, pair.refresh_token):
            self._call(deadline, "POST", "/security/revoke", json={"token": token}, auth=False)
        self._call(deadline, "GET", "/security/verify", auth=pair.access_token, expect=(401,))
        self._token = None

    def _release(self, path: str, deadline: _Deadline) -> None:
        self._call(deadline, "DELETE", path, expect=(200, 404))

    def _forget_identity(self, deadline: _Deadline) -> None:
        # The coordinator reports the throw-away agent's outcome to the trust table without
        # waiting; let it land first, so no trust record outlives the identity.
        settle_s = min(deadline.left(), 5.0) if self._dispatched else 0.0
        identity.forget_agent(self._settings, self.name, trust_settle_s=settle_s)


def _task_id(agent: CheckAgent) -> str | None:
    return agent.received[-1].task_id if agent.received else None


def _reason(path: str, response: httpx.Response) -> str:
    """The error detail of a reply; for a route Serve does not know, which app to look at."""
    try:
        body = response.json()
    except ValueError:
        body = None
    detail = body.get("detail") if isinstance(body, dict) else None
    if detail is not None:
        return str(detail)[:500]
    app = next((a for a, prefix in APP_ROUTE_PREFIXES.items() if path.startswith(prefix)), None)
    hint = f" (is the '{app}' application running? see `aisys status`)" if app else ""
    return response.text[:300] + hint
