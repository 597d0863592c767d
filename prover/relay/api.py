"""The relay's HTTP API (FastAPI; OpenAPI at ``/openapi.json``, docs at ``/docs``).

Every error is ``{"detail": "<one specific line>"}`` and never echoes the request: FastAPI's
default validation answer includes the offending input (it would return a patient's features),
so :func:`_validation_error` rebuilds it from locations and messages only.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import FastAPI, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from prover.exceptions import (
    BountyRejected,
    ChainUnavailable,
    EvaluationConflict,
    EvaluationNotFound,
    IdempotencyConflict,
    InvalidInput,
    JobNotFound,
    PolicyRejected,
    QueueFull,
    UnknownModel,
)
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
from prover.relay.settings import dotted
from prover.relay.states import JobState

log = logging.getLogger("zkcare.relay.api")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody, "description": text}
    for code, text in [
        (400, "malformed JSON"),
        (404, "no such job"),
        (409, "idempotency key reused for a different request"),
        (413, "request body too large"),
        (422, "invalid job (features, model, policy …)"),
        (429, "proving queue full; see Retry-After"),
    ]
}
EVALUATION_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody, "description": text}
    for code, text in [
        (400, "malformed JSON"),
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

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
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
        description="Turns claim jobs into zero-knowledge proofs and on-chain payouts.",
        lifespan=lifespan,
    )
    app.add_middleware(BodyLimit, limit=relay.settings.max_body_bytes)

    def reject(status: int, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
        relay.metrics.rejected_requests.labels(str(status)).inc()
        return JSONResponse({"detail": detail}, status_code=status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def on_validation(_req: Request, exc: RequestValidationError) -> JSONResponse:
        response = _validation_error(exc)
        relay.metrics.rejected_requests.labels(str(response.status_code)).inc()
        return response

    @app.exception_handler(QueueFull)
    async def on_queue_full(_req: Request, exc: QueueFull) -> JSONResponse:
        return reject(429, str(exc), {"Retry-After": str(exc.retry_after)})

    @app.exception_handler(IdempotencyConflict)
    async def on_conflict(_req: Request, exc: IdempotencyConflict) -> JSONResponse:
        return reject(409, str(exc))

    @app.exception_handler(JobNotFound)
    @app.exception_handler(EvaluationNotFound)
    async def on_not_found(_req: Request, exc: Exception) -> JSONResponse:
        return reject(404, str(exc))

    @app.exception_handler(EvaluationConflict)
    async def on_evaluation_conflict(_req: Request, exc: EvaluationConflict) -> JSONResponse:
        return reject(409, str(exc))

    @app.exception_handler(ChainUnavailable)
    async def on_chain_down(_req: Request, exc: ChainUnavailable) -> JSONResponse:
        return reject(503, f"the chain is unreachable, retry later ({exc})")

    @app.exception_handler(BountyRejected)
    @app.exception_handler(UnknownModel)
    @app.exception_handler(PolicyRejected)
    @app.exception_handler(InvalidInput)
    async def on_invalid(_req: Request, exc: Exception) -> JSONResponse:
        return reject(422, str(exc))

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
    def submit_job(req: JobRequest, response: Response) -> JobAccepted:
        job, created = relay.submit(req)
        response.headers["Location"] = f"/v1/jobs/{job.id}"
        return JobAccepted(job_id=job.id, state=job.state, created=created)

    @app.get(
        "/v1/jobs/{job_id}",
        response_model=JobStatus,
        responses={404: ERRORS[404], 422: ERRORS[422]},
        summary="A job's status",
    )
    def get_job(job_id: Annotated[str, Path(pattern=JOB_ID_PATTERN)]) -> JobStatus:
        job = relay.store.get(job_id)
        return JobStatus.of(job, relay.store.attempt_counts([job.id]).get(job.id, 0))

    @app.get(
        "/v1/jobs",
        response_model=JobList,
        responses={422: ERRORS[422]},
        summary="List jobs, oldest first",
    )
    def list_jobs(
        state: Annotated[JobState | None, Query()] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        offset: Annotated[int, Query(ge=0, le=2**62)] = 0,
    ) -> JobList:
        jobs = relay.store.list_jobs(None if state is None else [state], limit, offset)
        counts = relay.store.attempt_counts(j.id for j in jobs)
        return JobList(jobs=[JobStatus.of(j, counts.get(j.id, 0)) for j in jobs])

    if relay.evaluations is not None:
        _evaluation_routes(app, relay)

    @app.get("/healthz", response_model=Health, summary="Health")
    def health() -> Health:
        return relay.health()

    @app.get("/metrics", summary="Prometheus metrics", response_class=Response)
    def metrics() -> Response:
        return Response(generate_latest(relay.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app


def _evaluation_routes(app: FastAPI, relay: Relay) -> None:
    """``/v1/evaluations``: served only when the settings have an ``[evaluation]`` section."""
    evaluations = relay.evaluations
    assert evaluations is not None

    @app.post(
        "/v1/evaluations",
        status_code=202,
        response_model=EvaluationAccepted,
        responses=EVALUATION_ERRORS,
        summary="Evaluate a researcher's model on this relay's private benchmark",
    )
    def submit_evaluation(req: EvaluationRequest, response: Response) -> EvaluationAccepted:
        """Prove the weights' accuracy on the hospital's private benchmark and, if it reaches
        the bounty's minimum, commit and reveal for the researcher, who is paid.

        **Who may call it:** anyone who can reach this port. The relay has no client
        authentication yet (a separate security issue); it listens on 127.0.0.1 by default,
        so only this host can call it unless `host` is changed. Expose it to researchers only
        through a proxy that authenticates them: every call costs the relay a proof and, if the
        minimum is reached, two transactions paid by the submitter key, and each answer tells
        whether the weights reached the minimum on the private rows.

        The weights and bias are private to the researcher: kept sealed until the evaluation
        is final, never logged or returned. The proved count is returned after the award only.
        """
        record = evaluations.submit(req)
        response.headers["Location"] = f"/v1/evaluations/{record.id}"
        return EvaluationAccepted(evaluation_id=record.id, state=record.state.value)

    @app.get(
        "/v1/evaluations/{evaluation_id}",
        response_model=EvaluationStatus,
        responses={404: EVALUATION_ERRORS[404], 422: EVALUATION_ERRORS[422]},
        summary="An evaluation's status",
    )
    def get_evaluation(
        evaluation_id: Annotated[str, Path(pattern=EVALUATION_ID_PATTERN)],
    ) -> EvaluationStatus:
        """State (queued, proving, committed, awarded, failed + reason), transactions, and after
        the award the proved count. Anyone holding the (random) evaluation id may read it."""
        r = evaluations.get(evaluation_id)
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
