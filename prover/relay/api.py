"""The relay's HTTP API (FastAPI; OpenAPI at ``/openapi.json``, for clients with ``read``).

Every route but ``GET /livez`` needs ``Authorization: Bearer <token>`` of a live client holding
the route's scope (:mod:`prover.relay.auth`): 401 without a valid token, 403 without the scope.
A client sees only its own jobs and evaluations (another's answer 404, as if absent) unless it
holds ``admin``. Every request is recorded in the store's audit table (client, action, target,
outcome, remote address; ``X-Forwarded-For`` only when the peer is a configured trusted proxy).

Every error is ``{"detail": "<one specific line>"}`` and never echoes the request: FastAPI's
default validation answer includes the offending input (it would return a patient's features),
so :func:`_validation_error` rebuilds it from locations and messages only.
"""

from __future__ import annotations

import ipaddress
import logging
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from prover.exceptions import (
    AuthenticationFailed,
    BountyRejected,
    ChainUnavailable,
    DuplicateRecord,
    EvaluationConflict,
    EvaluationNotFound,
    IdempotencyConflict,
    InvalidInput,
    JobNotFound,
    PolicyRejected,
    QueueFull,
    ScopeDenied,
    UnknownModel,
)
from prover.relay.auth import Client, Scope, bearer
from prover.relay.schemas import (
    EVALUATION_ID_PATTERN,
    JOB_ID_PATTERN,
    ErrorBody,
    EvaluationAccepted,
    EvaluationRequest,
    EvaluationStatus,
    Health,
    JobAccepted,
    JobList,
    JobRequest,
    JobStatus,
)
from prover.relay.service import Relay
from prover.relay.settings import RelaySettings, dotted
from prover.relay.states import JobState

log = logging.getLogger("zkcare.relay.api")

ASGIScope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[ASGIScope, Receive, Send], Awaitable[None]]

ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody, "description": text}
    for code, text in [
        (400, "malformed JSON"),
        (401, "no valid client token"),
        (403, "the client lacks the submit scope"),
        (404, "no such job"),
        (
            409,
            "idempotency key reused for a different request, or the record already claimed on "
            "this policy (names the job)",
        ),
        (413, "request body too large"),
        (422, "invalid job (features, model, policy …)"),
        (429, "proving queue full; see Retry-After"),
    ]
}
EVALUATION_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody, "description": text}
    for code, text in [
        (400, "malformed JSON"),
        (401, "no valid client token"),
        (403, "the client lacks the submit scope"),
        (404, "no such evaluation"),
        (409, "the researcher already has a live or awarded evaluation for this bounty"),
        (413, "request body too large"),
        (
            422,
            "invalid weights, researcher or bounty (unknown, closed, another benchmark's "
            "circuit …)",
        ),
        (429, "too many unfinished evaluations; see Retry-After"),
        (503, "the chain is unreachable: the bounty cannot be checked"),
    ]
}


class BodyLimit:
    """ASGI middleware: refuse bodies over ``limit`` bytes with 413, before parsing them."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: ASGIScope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None:
            try:
                size = int(declared)
            except ValueError:
                await _send_error(send, 400, "Content-Length is not a number")
                return
            if size > self.limit:
                await _send_error(send, 413, self._too_large(size))
                return
        body = b""
        more = True
        messages: list[Message] = []
        while more:
            message = await receive()
            if message["type"] != "http.request":
                messages.append(message)
                break
            body += message.get("body", b"")
            more = bool(message.get("more_body"))
            if len(body) > self.limit:
                await _send_error(send, 413, self._too_large(len(body), at_least=more))
                return
        replay: list[Message] = [{"type": "http.request", "body": body, "more_body": False}]
        replay += messages

        async def replay_receive() -> Message:
            return replay.pop(0) if replay else await receive()

        await self.app(scope, replay_receive, send)

    def _too_large(self, size: int, at_least: bool = False) -> str:
        return (
            f"request body is {'over ' if at_least else ''}{size} bytes; "
            f"the limit is {self.limit} bytes"
        )


async def _send_error(send: Send, status: int, detail: str) -> None:
    response = JSONResponse({"detail": detail}, status_code=status)
    await response({"type": "http"}, _no_receive, send)


async def _no_receive() -> Message:  # pragma: no cover - responses do not read
    return {"type": "http.disconnect"}


def _loc(loc: tuple[int | str, ...]) -> str:
    return dotted(tuple(p for p in loc if p != "body")) or "body"


def _validation_error(exc: RequestValidationError) -> JSONResponse:
    errors = exc.errors()
    for err in errors:
        if err.get("type") == "json_invalid":
            reason = (err.get("ctx") or {}).get("error", "invalid JSON")
            return JSONResponse({"detail": f"malformed JSON: {reason}"}, status_code=400)
    lines = []
    for err in errors[:5]:
        msg = str(err.get("msg", "invalid"))
        lines.append(f"{_loc(tuple(err.get('loc', ())))}: {msg}")
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    return JSONResponse({"detail": "; ".join(lines) + more}, status_code=422)


def _auth_errors(scope: Scope) -> dict[int | str, dict[str, Any]]:
    return {
        401: {"model": ErrorBody, "description": "no valid client token"},
        403: {"model": ErrorBody, "description": f"the client lacks the {scope} scope"},
    }


def remote_address(
    request: Request, proxies: list[ipaddress.IPv4Network | ipaddress.IPv6Network]
) -> str:
    """The caller's address: the TCP peer, or, when the peer is a trusted proxy, the right-most
    ``X-Forwarded-For`` entry that is not a trusted proxy."""
    peer = request.client.host if request.client else "?"

    def trusted(addr: str) -> bool:
        try:
            ip = ipaddress.ip_address(addr)
        except ValueError:
            return False
        return any(ip in net for net in proxies)

    if not proxies or not trusted(peer):
        return peer
    hops = [h.strip() for h in request.headers.get("x-forwarded-for", "").split(",") if h.strip()]
    for hop in reversed(hops):
        if not trusted(hop):
            return hop[:64]
    return peer


class Guard:
    """Authentication, authorisation and the audit trail of one app's routes."""

    def __init__(self, relay: Relay) -> None:
        self.relay = relay
        self.proxies = relay.settings.proxy_networks

    def audit(
        self, request: Request, client: Client | None, target: str | None, outcome: str
    ) -> None:
        """One audit row for this request."""
        route = request.scope.get("route")
        path = getattr(route, "path", request.url.path)
        self.relay.store.audit(
            client.id if client else None,
            f"{request.method} {path}",
            target,
            outcome,
            remote_address(request, self.proxies),
        )

    def need(self, scope: Scope) -> Callable[[Request], Client]:
        """A FastAPI dependency: the request's live client holding ``scope`` (401/403)."""

        def dependency(request: Request) -> Client:
            client: Client | None = None
            try:
                token = bearer(request.headers.get("authorization"))
                client = self.relay.store.authenticate(token)
                if not client.may(scope):
                    raise ScopeDenied(client.name, scope.value)
            except AuthenticationFailed as exc:
                self.audit(request, None, None, f"401 {exc}")
                raise
            except ScopeDenied as exc:
                self.audit(request, client, None, f"403 {exc}")
                raise
            request.state.client = client
            return client

        return dependency

    @staticmethod
    def visible(client: Client, owner: str | None) -> bool:
        """Whether ``client`` may see a job or evaluation of ``owner``."""
        return client.sees_all or owner == client.id


def server_options(settings: RelaySettings) -> dict[str, Any]:
    """uvicorn options for these settings: TLS (and mTLS) when configured; uvicorn's own
    ``X-Forwarded-*`` handling off (it trusts loopback peers; :func:`remote_address` trusts only
    ``trusted_proxies``)."""
    options: dict[str, Any] = {"proxy_headers": False, "server_header": False}
    if settings.tls_cert_file is not None:
        options["ssl_certfile"] = str(settings.tls_cert_file)
        options["ssl_keyfile"] = str(settings.tls_key_file)
    if settings.tls_client_ca_file is not None:
        options["ssl_ca_certs"] = str(settings.tls_client_ca_file)
        options["ssl_cert_reqs"] = ssl.CERT_REQUIRED
    return options


def _need(scope: Scope) -> Callable[[Request], Client]:
    """A route dependency: the request's client, which must hold ``scope`` (401/403)."""

    def dependency(request: Request) -> Client:
        guard: Guard = request.app.state.guard
        return guard.need(scope)(request)

    return dependency


SubmitClient = Annotated[Client, Depends(_need(Scope.SUBMIT))]
ReadClient = Annotated[Client, Depends(_need(Scope.READ))]
AdminClient = Annotated[Client, Depends(_need(Scope.ADMIN))]


def create_app(relay: Relay, *, manage_relay: bool = True) -> FastAPI:
    """The FastAPI application; with ``manage_relay`` its lifespan starts and stops the relay."""

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if manage_relay and not relay.started:
            relay.start()
        try:
            yield
        finally:
            if manage_relay:
                relay.stop()

    app = FastAPI(
        title="zkcare prover relay",
        version="1",
        description="Turns claim jobs into zero-knowledge proofs and on-chain payouts. "
        "Every route but /livez needs a client token (Authorization: Bearer zkr_…).",
        lifespan=lifespan,
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )
    app.add_middleware(BodyLimit, limit=relay.settings.max_body_bytes)

    def reject(status: int, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
        relay.metrics.rejected_requests.labels(str(status)).inc()
        return JSONResponse({"detail": detail}, status_code=status, headers=headers)

    guard = Guard(relay)
    app.state.guard = guard
    audit, visible = guard.audit, guard.visible

    def refused(
        request: Request, status: int, detail: str, headers: dict[str, str] | None = None
    ) -> JSONResponse:
        """A refusal, recorded in the audit table (the detail never quotes the request)."""
        client = getattr(request.state, "client", None)
        audit(request, client, None, f"{status} {detail}")
        return reject(status, detail, headers)

    @app.exception_handler(AuthenticationFailed)
    async def on_unauthenticated(_req: Request, exc: AuthenticationFailed) -> JSONResponse:
        return reject(401, str(exc), {"WWW-Authenticate": "Bearer"})

    @app.exception_handler(ScopeDenied)
    async def on_forbidden(_req: Request, exc: ScopeDenied) -> JSONResponse:
        return reject(403, str(exc))

    @app.exception_handler(DuplicateRecord)
    async def on_duplicate(request: Request, exc: DuplicateRecord) -> JSONResponse:
        audit(request, getattr(request.state, "client", None), exc.job_id, "409 duplicate record")
        return reject(409, str(exc))

    @app.exception_handler(RequestValidationError)
    async def on_validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        response = _validation_error(exc)
        relay.metrics.rejected_requests.labels(str(response.status_code)).inc()
        client = getattr(request.state, "client", None)
        audit(request, client, None, f"{response.status_code} invalid request")
        return response

    @app.exception_handler(QueueFull)
    async def on_queue_full(request: Request, exc: QueueFull) -> JSONResponse:
        return refused(request, 429, str(exc), {"Retry-After": str(exc.retry_after)})

    @app.exception_handler(IdempotencyConflict)
    async def on_conflict(request: Request, exc: IdempotencyConflict) -> JSONResponse:
        return refused(request, 409, str(exc))

    @app.exception_handler(JobNotFound)
    @app.exception_handler(EvaluationNotFound)
    async def on_not_found(_req: Request, exc: Exception) -> JSONResponse:
        return reject(404, str(exc))

    @app.exception_handler(EvaluationConflict)
    async def on_evaluation_conflict(request: Request, exc: EvaluationConflict) -> JSONResponse:
        return refused(request, 409, str(exc))

    @app.exception_handler(ChainUnavailable)
    async def on_chain_down(request: Request, exc: ChainUnavailable) -> JSONResponse:
        return refused(request, 503, f"the chain is unreachable, retry later ({exc})")

    @app.exception_handler(BountyRejected)
    @app.exception_handler(UnknownModel)
    @app.exception_handler(PolicyRejected)
    @app.exception_handler(InvalidInput)
    async def on_invalid(request: Request, exc: Exception) -> JSONResponse:
        return refused(request, 422, str(exc))

    @app.exception_handler(Exception)
    async def on_error(_req: Request, exc: Exception) -> JSONResponse:
        log.error("internal error: %s", type(exc).__name__)
        return JSONResponse({"detail": "internal error; see the relay's log"}, status_code=500)

    @app.post(
        "/v1/jobs",
        status_code=202,
        response_model=JobAccepted,
        responses=ERRORS,
        summary="Submit a claim job",
    )
    def submit_job(
        req: JobRequest,
        request: Request,
        response: Response,
        client: SubmitClient,
    ) -> JobAccepted:
        """Queue a claim job (``held`` while its policy cannot be checked on the chain).

        **Who may call it:** clients with the ``submit`` scope."""
        job, created = relay.submit(req, client.id)
        audit(request, client, job.id, f"{job.state} ({'created' if created else 'existing'})")
        response.headers["Location"] = f"/v1/jobs/{job.id}"
        return JobAccepted(job_id=job.id, state=job.state, created=created)

    @app.get(
        "/v1/jobs/{job_id}",
        response_model=JobStatus,
        responses={**_auth_errors(Scope.READ), 404: ERRORS[404], 422: ERRORS[422]},
        summary="A job's status",
    )
    def get_job(
        job_id: Annotated[str, Path(pattern=JOB_ID_PATTERN)],
        request: Request,
        client: ReadClient,
    ) -> JobStatus:
        """**Who may call it:** the client that submitted the job (``read``), or ``admin``;
        anyone else gets 404."""
        try:
            job = relay.store.get(job_id)
        except JobNotFound:
            audit(request, client, job_id, "404 no such job")
            raise
        if not visible(client, job.client_id):
            audit(request, client, job_id, "404 another client's job")
            raise JobNotFound(job_id)
        audit(request, client, job_id, "200")
        return JobStatus.of(job, relay.store.attempt_counts([job.id]).get(job.id, 0))

    @app.get(
        "/v1/jobs",
        response_model=JobList,
        responses={**_auth_errors(Scope.READ), 422: ERRORS[422]},
        summary="List jobs, oldest first",
    )
    def list_jobs(
        request: Request,
        client: ReadClient,
        state: Annotated[JobState | None, Query()] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        offset: Annotated[int, Query(ge=0, le=2**62)] = 0,
    ) -> JobList:
        """**Who may call it:** ``read`` clients (their own jobs only), ``admin`` (every job)."""
        jobs = relay.store.list_jobs(
            None if state is None else [state],
            limit,
            offset,
            client_id=None if client.sees_all else client.id,
        )
        audit(request, client, None, f"200 ({len(jobs)} jobs)")
        counts = relay.store.attempt_counts(j.id for j in jobs)
        return JobList(jobs=[JobStatus.of(j, counts.get(j.id, 0)) for j in jobs])

    if relay.evaluations is not None:
        _evaluation_routes(app, relay, guard)

    @app.get("/livez", summary="Liveness (no token; says nothing else)")
    async def livez() -> dict[str, str]:
        """**Who may call it:** anyone. Answers ``{"status": "alive"}`` and nothing more."""
        return {"status": "alive"}

    @app.get(
        "/healthz", response_model=Health, responses=_auth_errors(Scope.ADMIN), summary="Health"
    )
    def health(request: Request, client: AdminClient) -> Health:
        """Chain, submitter and queue state. **Who may call it:** ``admin`` clients."""
        audit(request, client, None, "200")
        return relay.health()

    @app.get(
        "/metrics",
        summary="Prometheus metrics",
        response_class=Response,
        responses=_auth_errors(Scope.ADMIN),
    )
    def metrics(request: Request, client: AdminClient) -> Response:
        """**Who may call it:** ``admin`` clients (e.g. the Prometheus scraper's token)."""
        audit(request, client, None, "200")
        return Response(generate_latest(relay.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get(
        "/openapi.json",
        summary="This API's OpenAPI document",
        responses=_auth_errors(Scope.READ),
        include_in_schema=False,
    )
    def openapi(_client: ReadClient) -> JSONResponse:
        """**Who may call it:** ``read`` clients."""
        return JSONResponse(app.openapi())

    return app


def _evaluation_routes(app: FastAPI, relay: Relay, guard: Guard) -> None:
    """``/v1/evaluations``: served only when the settings have an ``[evaluation]`` section."""
    evaluations = relay.evaluations
    assert evaluations is not None
    audit, visible = guard.audit, guard.visible

    @app.post(
        "/v1/evaluations",
        status_code=202,
        response_model=EvaluationAccepted,
        responses=EVALUATION_ERRORS,
        summary="Evaluate a researcher's model on this relay's private benchmark",
    )
    def submit_evaluation(
        req: EvaluationRequest,
        request: Request,
        response: Response,
        client: SubmitClient,
    ) -> EvaluationAccepted:
        """Prove the weights' accuracy on the hospital's private benchmark and, if it reaches
        the bounty's minimum, commit and reveal for the researcher, who is paid.

        **Who may call it:** clients with the ``submit`` scope (give researchers their own
        client each): every call costs the relay a proof and, if the minimum is reached, two
        transactions paid by the submitter key, and each answer tells whether the weights
        reached the minimum on the private rows.

        The weights and bias are private to the researcher: kept sealed until the evaluation
        is final, never logged or returned. The proved count is returned after the award only.
        """
        record = evaluations.submit(req, client.id)
        audit(request, client, record.id, f"{record.state.value} (created)")
        response.headers["Location"] = f"/v1/evaluations/{record.id}"
        return EvaluationAccepted(evaluation_id=record.id, state=record.state.value)

    @app.get(
        "/v1/evaluations/{evaluation_id}",
        response_model=EvaluationStatus,
        responses={
            **_auth_errors(Scope.READ),
            404: EVALUATION_ERRORS[404],
            422: EVALUATION_ERRORS[422],
        },
        summary="An evaluation's status",
    )
    def get_evaluation(
        evaluation_id: Annotated[str, Path(pattern=EVALUATION_ID_PATTERN)],
        request: Request,
        client: ReadClient,
    ) -> EvaluationStatus:
        """State (queued, proving, committed, awarded, failed + reason), transactions, and after
        the award the proved count. **Who may call it:** the client that asked for it
        (``read``), or ``admin``; anyone else gets 404."""
        r = evaluations.get(evaluation_id)
        if not visible(client, r.client_id):
            audit(request, client, evaluation_id, "404 another client's evaluation")
            raise EvaluationNotFound(evaluation_id)
        audit(request, client, evaluation_id, "200")
        return EvaluationStatus(
            evaluation_id=r.id,
            bounty_id=r.bounty_id,
            researcher=r.researcher,
            state=r.state.value,
            reason=r.reason,
            commit_tx=r.commit_tx,
            reveal_tx=r.reveal_tx,
            block_number=r.block_number,
            correct=r.correct if r.state == "awarded" else None,
            benchmark_size=r.benchmark_size if r.state == "awarded" else None,
            amount_wei=None if r.amount_wei is None else str(r.amount_wei),
            created_at=r.created_at,
            updated_at=r.updated_at,
        )
