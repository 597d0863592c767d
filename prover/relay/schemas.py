"""The HTTP API's request and response bodies (their JSON Schema is in the OpenAPI document).

Responses never contain patient features or salt: :class:`JobStatus` is built from stored
columns that hold only public or operational data. Nor do they carry a model's score: a job
reports only its decision (``paid``/``denied``), as the chain settled it.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from prover.relay.states import JobState
from prover.relay.store import Job
from prover.zk.commitment import KZG_SALT_LIMBS, MAX_SALT_LIMBS, SALT_LIMB_BITS, SALT_LIMBS

IdempotencyKey = Annotated[
    str, StringConstraints(min_length=8, max_length=128, pattern=r"^[A-Za-z0-9._:-]+$")
]
#: Any finite number here; the requested model's card says which values it allows.
Feature = Annotated[float, Field(strict=True, allow_inf_nan=False)]
#: The most raw values one record may have (the body limit, ``max_body_bytes``, comes first).
MAX_FEATURES = 65_536
SaltLimb = Annotated[int, Field(strict=True, ge=0, lt=1 << SALT_LIMB_BITS)]
JOB_ID_PATTERN = r"^[0-9a-f]{32}$"


class JobRequest(BaseModel):
    """A claim job: prove the model on this patient's record and claim on this policy."""

    model_config = ConfigDict(extra="forbid")

    idempotency_key: IdempotencyKey = Field(
        description="client-chosen; resubmitting the same request with it returns the same job"
    )
    policy_id: int = Field(strict=True, ge=1, lt=2**256, description="ClaimSettlement policy")
    model: Annotated[str, StringConstraints(min_length=1, max_length=64)] = Field(
        description="model name, e.g. breast_cancer_lr"
    )
    model_version: int = Field(strict=True, ge=1, lt=2**32, description="registered version")
    record_id: Annotated[str, StringConstraints(min_length=1, max_length=256)] = Field(
        description="the hospital's record id; only its keyed hash (nullifier) is stored"
    )
    features: list[Feature] = Field(
        min_length=1,
        max_length=MAX_FEATURES,
        description="the raw record, as many values as the model's card says, each within its "
        "range (checked against the card: 422 naming the model and the feature); never "
        "returned or logged",
    )
    salt: list[SaltLimb] | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_SALT_LIMBS,
        description=f"limbs of {SALT_LIMB_BITS} bits, as many as the model's card says "
        f"(`salt.limbs`: {KZG_SALT_LIMBS} for a polycommit model, {SALT_LIMBS} for a hashed "
        "one); generated when absent",
    )


class JobAccepted(BaseModel):
    """Answer to a submission."""

    job_id: str
    state: JobState
    created: bool = Field(description="false when the idempotency key matched an earlier job")


class JobStatus(BaseModel):
    """A job's public status."""

    job_id: str
    idempotency_key: str
    state: JobState
    reason: str | None = None
    policy_id: int
    model: str
    model_version: int
    input_commitment: str | None = Field(default=None, description="hex field element")
    decision: Literal["paid", "denied"] | None = Field(
        default=None,
        description="the claim's outcome once settled on chain (never the model's score)",
    )
    nonce: int | None = None
    tx_hash: str | None = None
    transactions: int = Field(0, description="signed attempts (replacements included)")
    block_number: int | None = None
    gas_used: int | None = None
    claim_id: int | None = None
    amount_wei: str | None = None
    created_at: float
    updated_at: float
    final_at: float | None = None

    @classmethod
    def of(cls, job: Job, transactions: int = 0) -> JobStatus:
        """Project a stored job onto its public fields."""
        return cls(
            job_id=job.id,
            idempotency_key=job.idempotency_key,
            state=job.state,
            reason=job.reason,
            policy_id=job.policy_id,
            model=job.model,
            model_version=job.model_version,
            input_commitment=None
            if job.input_commitment is None
            else f"0x{job.input_commitment:064x}",
            decision=_DECISIONS.get(job.state),
            nonce=job.nonce,
            tx_hash=job.tx_hash,
            transactions=transactions,
            block_number=job.block_number,
            gas_used=job.gas_used,
            claim_id=job.claim_id,
            amount_wei=None if job.amount is None else str(job.amount),
            created_at=job.created_at,
            updated_at=job.updated_at,
            final_at=job.final_at,
        )


_DECISIONS: dict[JobState, Literal["paid", "denied"]] = {
    JobState.PAID: "paid",
    JobState.DENIED: "denied",
}


class JobList(BaseModel):
    """A page of jobs, oldest first."""

    jobs: list[JobStatus]


class ErrorBody(BaseModel):
    """Every 4xx/5xx answer: one line, specific, never echoing patient values."""

    detail: str


class ChainHealth(BaseModel):
    """The submitter's view of the chain."""

    reachable: bool
    endpoint: str
    chain_id: int | None
    last_error: str | None


class Health(BaseModel):
    """Liveness and what would stop jobs from finishing."""

    status: str = Field(description="ok, or degraded (chain unreachable / submitter paused)")
    chain: ChainHealth
    submitter: str
    active_submitter: bool = Field(
        default=True,
        description="whether this instance holds the submitter lease (always, on SQLite): "
        "only the active submitter signs and sends transactions",
    )
    submitter_epoch: int | None = Field(
        default=None, description="the lease's fencing epoch while this instance holds it"
    )
    hospital: str
    paused: str | None
    workers: int
    queue_limit: int
    jobs: dict[str, int]


# ------------------------------------------------------------------ research-bounty evaluations

EVALUATION_ID_PATTERN = JOB_ID_PATTERN
#: More than the model takes (30), so a wrong length gets its own one-line reason.
MAX_WEIGHTS = 1024


class EvaluationRequest(BaseModel):
    """A researcher's model, to be proved on this relay's private benchmark and submitted."""

    model_config = ConfigDict(extra="forbid")

    bounty_id: int = Field(strict=True, ge=1, lt=2**256, description="ResearchBounty bounty id")
    researcher: Annotated[str, StringConstraints(min_length=1, max_length=64)] = Field(
        description="the address the bounty pays (it sends no transaction)"
    )
    weights: list[Feature] = Field(
        min_length=1,
        max_length=MAX_WEIGHTS,
        description="30 logistic-regression weights, one per standardized feature; private: "
        "never returned or logged",
    )
    bias: Feature = Field(description="the intercept; private like the weights")


class EvaluationAccepted(BaseModel):
    """Answer to an evaluation request."""

    evaluation_id: str
    state: str


class EvaluationStatus(BaseModel):
    """An evaluation's status; the proved count only once the bounty paid the researcher."""

    evaluation_id: str
    bounty_id: int
    researcher: str
    state: str = Field(
        description="queued, proving (until the commitment is mined), committed, awarded or failed"
    )
    reason: str | None = Field(default=None, description="why it failed, one line")
    commit_tx: str | None = None
    reveal_tx: str | None = None
    block_number: int | None = Field(default=None, description="the award's block")
    correct: int | None = Field(
        default=None, description="benchmark patients classified right (after award only)"
    )
    benchmark_size: int | None = Field(default=None, description="after award only")
    amount_wei: str | None = Field(default=None, description="the award")
    created_at: float
    updated_at: float
