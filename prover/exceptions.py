"""The zkcare exception hierarchy.

Every error raised on purpose by zkcare derives from :class:`ZkcareError`. Area bases group
them (toolchain, circuit, proof, chain); specific errors also inherit the matching builtin so
callers can catch either, and build their message from the offending values.
"""

from __future__ import annotations

from pathlib import Path


class ZkcareError(Exception):
    """Root of every zkcare error."""


# --- toolchain -------------------------------------------------------------------------------


class ToolchainError(ZkcareError):
    """A required external tool (solc launcher, anvil, node) is missing or broken."""


class ToolMissing(ToolchainError, FileNotFoundError):
    """A tool the operation needs is not installed."""

    def __init__(self, tool: str, looked_at: str, fix: str = "./zk setup") -> None:
        self.tool = tool
        self.looked_at = looked_at
        super().__init__(f"{tool} not found ({looked_at}); run `{fix}` in the zkcare checkout")


class CompilationFailed(ToolchainError):
    """solc rejected a source file."""

    def __init__(self, source: str, errors: list[str]) -> None:
        self.source = source
        self.errors = errors
        super().__init__(f"solc failed to compile {source}: " + "; ".join(errors[:5]))


# --- inputs ----------------------------------------------------------------------------------


class InvalidInput(ZkcareError, ValueError):
    """User-supplied data is malformed or out of range."""


class InvalidPatientRecord(InvalidInput):
    """A patient's feature vector cannot be used."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"invalid patient record: {reason}")


class InvalidDecisionRule(InvalidInput):
    """A decision rule to compile into the circuit (``model build --decide``) is unusable."""

    def __init__(self, rule: str, reason: str) -> None:
        self.rule = rule
        self.reason = reason
        super().__init__(f"decision rule {rule!r}: {reason}")


class InvalidSalt(InvalidInput):
    """A commitment salt does not have the required shape or entropy."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"invalid salt: {reason}")


class FieldElementOutOfRange(InvalidInput):
    """An integer is not a canonical BN254 scalar-field element."""

    def __init__(self, value: int) -> None:
        self.value = value
        super().__init__(f"{value} is not in the BN254 scalar field [0, r)")


# --- circuits --------------------------------------------------------------------------------


class CircuitError(ZkcareError):
    """Building or using a circuit bundle failed."""


class UnsafeVisibility(CircuitError, ValueError):
    """A circuit would expose data that must stay private."""

    def __init__(self, what: str, visibility: str, hint: str) -> None:
        self.what = what
        self.visibility = visibility
        super().__init__(f"refusing {what} visibility {visibility!r}: {hint}")


class UnsupportedModel(CircuitError, ValueError):
    """An ONNX model cannot be turned into a circuit as it is."""

    def __init__(self, path: Path, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"{path.name}: {reason}")


class NoFittingSettings(CircuitError):
    """No circuit setting tried is both small enough and faithful to the float model."""

    def __init__(self, name: str, reason: str, hint: str) -> None:
        self.reason = reason
        super().__init__(f"model {name}: {reason}; {hint}")


class InputShapeError(InvalidInput):
    """A data file's rows do not fit the model's input."""

    def __init__(self, source: str, reason: str) -> None:
        self.source = source
        super().__init__(f"{source}: {reason}")


class FidelityCheckFailed(CircuitError):
    """A bundle's fidelity report is missing or failed, or its layout does not match its proof."""

    def __init__(self, bundle: Path, reason: str, override: str) -> None:
        self.reason = reason
        super().__init__(f"bundle {bundle.name}: {reason} (override only with {override})")


class BundleIncomplete(CircuitError, FileNotFoundError):
    """A circuit bundle directory lacks a file it must have."""

    def __init__(self, bundle: Path, missing: str) -> None:
        self.bundle = bundle
        super().__init__(f"circuit bundle {bundle} is incomplete: {missing} is missing")


class SrsError(CircuitError):
    """The structured reference string is missing or unusable."""


class EzklError(ZkcareError):
    """EZKL reported a failure (its RuntimeError, IOError or Rust panic)."""

    def __init__(self, operation: str, detail: str) -> None:
        self.operation = operation
        self.detail = detail
        super().__init__(f"ezkl {operation} failed: {detail}")


class VerifierGenerationError(CircuitError):
    """The Solidity verifier could not be generated or is incomplete."""


class UnknownVerifierShape(VerifierGenerationError):
    """The batch transformation met a generated verifier it does not recognise."""

    def __init__(self, anchor: str, found: int, expected: str = "exactly once") -> None:
        self.anchor = anchor
        self.found = found
        super().__init__(
            f"unknown verifier shape: anchor {anchor!r} found {found} times, expected {expected} "
            "(EZKL's generated verifier changed; update prover.zk.batch)"
        )


class VerifierTooLarge(VerifierGenerationError):
    """The verifier's deployed bytecode exceeds EIP-170's limit."""

    def __init__(self, name: str, size: int, limit: int) -> None:
        self.size = size
        self.limit = limit
        super().__init__(
            f"{name} deployed bytecode is {size} bytes, over EIP-170's {limit}-byte limit; "
            "reduce the circuit's columns or split the verifying key (reusable verifier)"
        )


# --- proofs ----------------------------------------------------------------------------------


class ProofError(ZkcareError):
    """A proof could not be produced, or it does not verify."""


class ProofRejected(ProofError):
    """A verifier (local or on-chain) rejected a proof."""

    def __init__(self, where: str, detail: str = "") -> None:
        self.where = where
        super().__init__(f"proof rejected by {where}" + (f": {detail}" if detail else ""))


# --- chain -----------------------------------------------------------------------------------


class ChainError(ZkcareError):
    """Talking to an EVM chain failed."""


class ChainUnavailable(ChainError, ConnectionError):
    """No JSON-RPC endpoint answered."""

    def __init__(self, url: str, detail: str = "") -> None:
        self.url = url
        super().__init__(f"no EVM node answers at {url}" + (f": {detail}" if detail else ""))


class TransactionFailed(ChainError):
    """A transaction was mined but reverted."""

    def __init__(self, tx_hash: str, detail: str = "") -> None:
        self.tx_hash = tx_hash
        super().__init__(f"transaction {tx_hash} reverted" + (f": {detail}" if detail else ""))


# --- prover relay ----------------------------------------------------------------------------


class RelayError(ZkcareError):
    """The prover relay could not accept, store or process a claim job."""


class RelayConfigError(RelayError, ValueError):
    """The relay's settings are invalid; one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid relay settings:\n" + "\n".join(f"  {p}" for p in problems))


class KeyLoadError(RelayError, ValueError):
    """A signing key could not be loaded (the message never contains key material)."""

    def __init__(self, role: str, reason: str) -> None:
        self.role = role
        super().__init__(f"{role} key: {reason}")


class KeyFileExists(RelayError, FileExistsError):
    """A new keystore or secret file would replace an existing file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        super().__init__(f"{path} already exists; refusing to overwrite it")


class DevRelayError(RelayError):
    """``python -m prover.relay dev`` could not set up its local chain, keys or relay."""

    def __init__(self, stage: str, reason: str) -> None:
        self.stage = stage
        super().__init__(f"{stage}: {reason}")


class UnknownModel(RelayError, LookupError):
    """A job names a model version this relay does not prove."""

    def __init__(self, model: str, version: int, known: list[str]) -> None:
        self.model = model
        self.version = version
        super().__init__(
            "unknown model name or version; this relay proves: " + (", ".join(known) or "nothing")
        )


class PolicyRejected(RelayError, ValueError):
    """The chain says a job's policy cannot be claimed (unknown, expired, other model …)."""

    def __init__(self, policy_id: int, reason: str) -> None:
        self.policy_id = policy_id
        super().__init__(f"policy {policy_id}: {reason}")


class IdempotencyConflict(RelayError, ValueError):
    """An idempotency key was reused for a different request."""

    def __init__(self, key: str, job_id: str) -> None:
        self.key = key
        self.job_id = job_id
        super().__init__(
            "this idempotency key was already used for a different request"
            + (f" (job {job_id})" if job_id else " (choose another key)")
        )


class DuplicateRecord(RelayError, ValueError):
    """A job for the same record on the same policy exists already (the record nullifier)."""

    def __init__(self, policy_id: int, job_id: str | None) -> None:
        self.policy_id = policy_id
        self.job_id = job_id
        where = f"job {job_id}" if job_id else "a job of another client"
        super().__init__(
            f"policy {policy_id}: this record is already claimed by {where}; "
            "a record is claimed once per policy"
        )


class AuthenticationFailed(RelayError, PermissionError):
    """A relay request carries no valid client token (HTTP 401)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class ScopeDenied(RelayError, PermissionError):
    """A relay client lacks the scope a request needs (HTTP 403)."""

    def __init__(self, client: str, needed: str) -> None:
        self.client = client
        self.needed = needed
        super().__init__(f"client {client} lacks the {needed!r} scope this request needs")


class ClientNotFound(RelayError, LookupError):
    """No relay client has this id (or name)."""

    def __init__(self, client: str) -> None:
        self.client = client
        super().__init__(f"no relay client {client!r}")


class InsecureBind(RelayError, ValueError):
    """The relay would listen beyond loopback without TLS or a trusted proxy in front."""

    def __init__(self, host: str, flag: str) -> None:
        self.host = host
        super().__init__(
            f"refusing to listen on {host} without TLS (tls_cert_file/tls_key_file) or a "
            f"trusted reverse proxy (trusted_proxies); pass {flag} to do it anyway"
        )


class QueueFull(RelayError):
    """The proving queue is at its bound; the client should retry later."""

    def __init__(self, depth: int, limit: int, retry_after: int) -> None:
        self.depth = depth
        self.limit = limit
        self.retry_after = retry_after
        super().__init__(
            f"proving queue is full ({depth} of {limit} jobs); retry in {retry_after} s"
        )


class JobNotFound(RelayError, KeyError):
    """No job has this id."""

    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        super().__init__(f"no job {job_id!r}")

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class InvalidTransition(RelayError, RuntimeError):
    """A job state change is not in the state machine or lost a compare-and-set race."""

    def __init__(self, job_id: str, from_state: str, to_state: str, actual: str | None) -> None:
        self.job_id = job_id
        self.from_state = from_state
        self.to_state = to_state
        self.actual = actual
        detail = "not allowed" if actual == from_state else f"job is {actual or 'missing'}"
        super().__init__(f"job {job_id}: {from_state} -> {to_state} refused ({detail})")


class SealedDataError(RelayError):
    """Sealed (encrypted) patient data could not be opened: wrong key or tampered store."""

    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        super().__init__(f"job {job_id}: sealed input does not decrypt with the configured key")


class ProverFailed(RelayError):
    """A prover worker could not prove a job; ``permanent`` failures are not retried."""

    def __init__(self, job_id: str, reason: str, permanent: bool) -> None:
        self.job_id = job_id
        self.reason = reason
        self.permanent = permanent
        super().__init__(f"job {job_id}: proving failed: {reason}")

    def __reduce__(self) -> tuple[type[ProverFailed], tuple[str, str, bool]]:
        return (type(self), (self.job_id, self.reason, self.permanent))


# --- research-bounty evaluations (the relay's private benchmark) --------------------------------


class BountyRejected(RelayError, ValueError):
    """An evaluation names a bounty this relay cannot win (unknown, closed, other circuit …)."""

    def __init__(self, bounty_id: int, reason: str) -> None:
        self.bounty_id = bounty_id
        super().__init__(f"bounty {bounty_id}: {reason}")


class EvaluationConflict(RelayError, ValueError):
    """The researcher already has an unfinished or awarded evaluation for this bounty."""

    def __init__(
        self, bounty_id: int, researcher: str, evaluation_id: str | None, state: str | None
    ) -> None:
        self.evaluation_id = evaluation_id
        which = f"evaluation {evaluation_id} ({state})" if evaluation_id else "an evaluation"
        super().__init__(
            f"bounty {bounty_id}: researcher {researcher} already has {which}"
            + ("" if evaluation_id else " asked for by another client")
        )


class EvaluationsBusy(QueueFull):
    """Too many evaluations are unfinished; the client should retry later."""

    def __init__(self, active: int, limit: int, retry_after: int) -> None:
        self.depth = active
        self.limit = limit
        self.retry_after = retry_after
        RelayError.__init__(
            self,
            f"{active} of {limit} evaluations are unfinished; retry in {retry_after} s",
        )


class EvaluationNotFound(RelayError, KeyError):
    """No evaluation has this id."""

    def __init__(self, evaluation_id: str) -> None:
        self.evaluation_id = evaluation_id
        super().__init__(f"no evaluation {evaluation_id!r}")

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


# --- event index, audit and dashboard ----------------------------------------------------------


class EventIndexError(ZkcareError):
    """The event index could not be built, read or reconciled."""


class IndexConfigError(EventIndexError, ValueError):
    """The index's settings or deployment manifest are unusable (the message names the fix)."""


class IndexStoreError(EventIndexError):
    """The index's database cannot be opened or belongs to another chain or deployment."""

    def __init__(self, where: str, reason: str) -> None:
        self.where = where
        super().__init__(f"index store {where}: {reason}")


class ReorgTooDeep(EventIndexError):
    """A re-organisation reaches below every block the index can check."""

    def __init__(self, block: int, depth: int) -> None:
        self.block = block
        super().__init__(
            f"chain re-organised below block {block} (more than {depth} indexed blocks); "
            "rebuild the index (delete its database)"
        )


class TraceNotFound(EventIndexError, LookupError):
    """No indexed claim or award has this id."""

    def __init__(self, what: str, ident: int) -> None:
        self.what = what
        self.ident = ident
        super().__init__(f"no {what} {ident} in the index (is it synced? see `audit`)")


class DashboardError(ZkcareError):
    """The dashboard cannot start as configured."""


class DashboardAuthRequired(DashboardError, PermissionError):
    """Binding beyond loopback needs an auth token file (hashed tokens)."""

    def __init__(self, host: str) -> None:
        self.host = host
        super().__init__(
            f"refusing to bind the dashboard to {host} without authentication: pass "
            "--tokens FILE (create one with --add-token NAME), or bind 127.0.0.1"
        )


class TokenFileError(DashboardError, ValueError):
    """A token file line is not ``sha256:<64 hex> [name]``."""

    def __init__(self, path: Path, line: int, reason: str) -> None:
        self.path = path
        super().__init__(f"{path}:{line}: {reason}")


# --- the distributed prover engine (Procrastinate on PostgreSQL; prover.relay.engine) ---------


class EngineError(RelayError):
    """Base class of the distributed prover engine's errors."""


class EngineConfigError(EngineError, ValueError):
    """A prover or relay engine setting (DSN, key, bundle directory) is unusable."""


class EngineUnavailable(EngineError, ConnectionError):
    """The engine's PostgreSQL broker cannot be reached or refused a statement."""

    def __init__(self, detail: str) -> None:
        self.detail = detail
        super().__init__(f"prover engine unavailable: {detail}")


class SealedTaskError(EngineError):
    """A task payload does not open with this prover's key, or belongs to another task."""

    def __init__(self, task_id: str, detail: str) -> None:
        self.task_id = task_id
        super().__init__(f"task {task_id}: sealed payload {detail}")


class BundleMismatch(EngineError, ValueError):
    """A prover's bundle (or key) is not what the relay serves: the prover is refused."""


# --- the active submitter's lease (several relays on one PostgreSQL store; relay.lease) --------


class LeaseError(RelayError):
    """Base class of the submitter lease's errors."""


class LeaseUnavailable(LeaseError, ConnectionError):
    """The lease's PostgreSQL cannot be reached or refused a statement."""

    def __init__(self, detail: str) -> None:
        self.detail = detail
        super().__init__(f"submitter lease unavailable: {detail}")


class LeaseLost(LeaseError):
    """This relay is no longer the active submitter (another took over, or the lease ran out):
    it must not sign."""

    def __init__(self, holder: str, epoch: int, detail: str) -> None:
        self.holder = holder
        self.epoch = epoch
        super().__init__(f"submitter lease of {holder} (epoch {epoch}) lost: {detail}")
