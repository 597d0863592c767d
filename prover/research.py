"""The researcher's side of a research bounty: prove, commit, wait, reveal, follow to the payout.

A :class:`Submission` keeps its whole state in one JSON file, written atomically before every
step that leaves the machine. Each signed transaction is stored *before* it is broadcast, and
every step first asks the chain whether it already happened (``commitBlock``, the bounty's
winner), so a crash or a re-run at any point neither loses the submission nor sends a
transaction twice: a stored transaction is re-broadcast as is (same nonce, same hash), and
re-signed only if its nonce was provably used by something else.

States: ``new`` → ``proved`` → ``commit_signed`` → ``committed`` → ``reveal_signed`` →
``awarded``; or ``lost`` (someone else won first) / ``failed`` (the chain refused the
submission; the decoded custom error is recorded).

Two hooks serve a relay that submits *for* a researcher (``prover.relay.evaluations``): the
payee ``researcher`` may differ from the signing account (the contract pays the researcher
named in the commitment, whoever sends the transactions), and ``prove`` replaces the
in-process proof (the relay proves in a separate process).
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eth_abi import encode
from eth_account.signers.local import LocalAccount
from eth_utils import keccak, to_checksum_address
from web3 import Web3
from web3.exceptions import ContractLogicError, TransactionNotFound, Web3RPCError

from prover.exceptions import ChainUnavailable, InvalidInput, ZkcareError
from prover.models import bounty_eval as ev
from prover.relay.chain import Broadcast, RevertDecoder, classify_broadcast_error, revert_data
from prover.zk.circuit import Bundle

#: Test-only crash points: ``ZKCARE_RESEARCH_CRASH_AT=commit_signed`` SIGKILLs after that step.
CRASH_ENV = "ZKCARE_RESEARCH_CRASH_AT"
CRASH_POINTS = (
    "proved",
    "commit_signed",
    "commit_sent",
    "committed",
    "reveal_signed",
    "reveal_sent",
)
STATE_VERSION = 1
OPEN, AWARDED, RECLAIMED = 1, 2, 3
Echo = Callable[[str], None]
ProveFn = Callable[[Bundle, ev.Weights, int, Path], ev.EvaluationProof]


class SubmissionError(ZkcareError):
    """The submission cannot go on (the message says why and what to do)."""


def _crash(point: str) -> None:
    if os.environ.get(CRASH_ENV) == point:
        os.kill(os.getpid(), signal.SIGKILL)


def _abi(name: str) -> list[dict[str, Any]]:
    """A project contract's ABI (ape compiles if needed)."""
    from prover.relay.devchain import compiled

    abi, _ = compiled(name)
    return abi


def _bytes(hex_text: str) -> bytes:
    return bytes.fromhex(hex_text.removeprefix("0x"))


def submission_commitment(bounty_id: int, researcher: str, weights: int, salt: bytes) -> bytes:
    """``ResearchBounty.submissionCommitment``."""
    return keccak(
        encode(
            ["uint256", "address", "uint256", "bytes32"],
            [bounty_id, to_checksum_address(researcher), weights, salt],
        )
    )


@dataclass
class Target:
    """Where the submission goes."""

    rpc_url: str
    bounty_contract: str
    bounty_id: int


class Submission:
    """One researcher's submission to one bounty, resumable from its state file."""

    def __init__(
        self,
        target: Target,
        account: LocalAccount,
        state_dir: Path,
        *,
        echo: Echo = print,
        timeout: float = 120.0,
        poll: float = 0.5,
        researcher: str | None = None,
        prove: ProveFn = ev.prove_evaluation,
    ) -> None:
        """``researcher``: who is paid (default: ``account``, which signs and pays the gas)."""
        self.w3 = Web3(Web3.HTTPProvider(target.rpc_url, request_kwargs={"timeout": 30}))
        try:
            self.chain_id = int(self.w3.eth.chain_id)
        except Exception as exc:  # requests raises many shapes of connection error
            raise ChainUnavailable(target.rpc_url, type(exc).__name__) from exc
        self.target = target
        self.account = account
        self.researcher = to_checksum_address(researcher or account.address)
        self.prove = prove
        self.echo = echo
        self.timeout = timeout
        self.poll = poll
        address = to_checksum_address(target.bounty_contract)
        if not self.w3.eth.get_code(address):
            raise SubmissionError(f"no contract at {address} on chain {self.chain_id}")
        abi = _abi("ResearchBounty")
        self.bounty = self.w3.eth.contract(address=address, abi=abi)
        self.decoder = RevertDecoder(abi)
        name = f"{self.chain_id}-{address.lower()}-{target.bounty_id}-{self.researcher.lower()}"
        state_dir.mkdir(parents=True, exist_ok=True)
        self.path = state_dir / f"{name}.json"
        self.proof_path = state_dir / f"{name}.proof.json"
        self.state: dict[str, Any] = json.loads(self.path.read_text()) if self.path.exists() else {}

    # ------------------------------------------------------------------------------ state

    def _save(self, **changes: Any) -> None:
        self.state.update(changes)
        tmp = self.path.with_suffix(".partial")
        with open(tmp, "w") as fh:
            json.dump(self.state, fh, indent=2, sort_keys=True)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)

    @property
    def status(self) -> str:
        return str(self.state.get("status", "new"))

    def describe(self) -> str:
        """One paragraph: where the submission stands."""
        s = self.state
        if not s:
            return f"no submission for bounty {self.target.bounty_id} by {self.researcher}"
        lines = [
            f"bounty {s['bounty_id']} on chain {s['chain_id']} ({s['bounty_contract']}), "
            f"researcher {s['researcher']}: {s['status']}",
        ]
        if "correct" in s:
            lines.append(f"  proved: {s['correct']}/{s['size']} benchmark patients right")
        if "commit_block" in s:
            lines.append(f"  committed in block {s['commit_block']}")
        if "award" in s:
            a = s["award"]
            lines.append(
                f"  awarded {a['amount']} wei in block {a['block']} (reveal gas {a['gas']})"
            )
        if "error" in s:
            lines.append(f"  {s['error']}")
        return "\n".join(lines)

    # ------------------------------------------------------------------------------ chain

    def _bounty(self) -> Any:
        b = self.bounty.functions.getBounty(self.target.bounty_id).call()
        if int(b[2]) == 0:
            raise SubmissionError(
                f"bounty {self.target.bounty_id} does not exist at {self.bounty.address}"
            )
        return b

    def _send(self, key: str, call: Any) -> None:
        """Sign ``call`` (gas estimated: a revert is decoded, not mined), store it, broadcast."""
        try:
            gas = int(call.estimate_gas({"from": self.account.address}))
        except (ContractLogicError, Web3RPCError) as exc:
            raise self._refused(exc) from exc
        nonce = self.w3.eth.get_transaction_count(self.account.address, "pending")
        base = int(self.w3.eth.get_block("latest").get("baseFeePerGas", 0))
        tip = self.w3.to_wei(1, "gwei")
        tx = call.build_transaction(
            {
                "from": self.account.address,
                "nonce": nonce,
                "gas": gas + gas // 5 + 20_000,
                "maxPriorityFeePerGas": tip,
                "maxFeePerGas": 2 * base + tip,
                "chainId": self.chain_id,
            }
        )
        signed = self.account.sign_transaction(tx)
        self._save(
            **{
                key: {
                    "raw": signed.raw_transaction.hex(),
                    "hash": signed.hash.hex(),
                    "nonce": nonce,
                }
            }
        )

    def _refused(self, exc: Exception) -> SubmissionError:
        data = revert_data(exc)
        reason = self.decoder.decode(data) if data is not None else str(exc).splitlines()[0][:200]
        return SubmissionError(f"the bounty contract refuses the submission: {reason}")

    def _broadcast(self, key: str) -> dict[str, Any] | None:
        """(Re-)broadcast the stored transaction; its receipt, or None if its nonce was reused."""
        tx = self.state[key]
        tx_hash = _bytes(tx["hash"])
        receipt = self._receipt(tx_hash)
        if receipt is not None:
            return receipt
        if self.w3.eth.get_transaction_count(self.account.address, "latest") > tx["nonce"]:
            return None  # the nonce went to another transaction: re-sign
        try:
            self.w3.eth.send_raw_transaction(_bytes(tx["raw"]))
        except (Web3RPCError, ValueError) as exc:
            outcome = classify_broadcast_error(str(exc))
            if outcome not in (Broadcast.KNOWN, Broadcast.NONCE_USED):
                raise SubmissionError(
                    f"the node refused the transaction: {str(exc)[:200]}"
                ) from exc
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            receipt = self._receipt(tx_hash)
            if receipt is not None:
                return receipt
            time.sleep(self.poll)
        raise SubmissionError(
            f"transaction {tx['hash']} not mined within {self.timeout:.0f} s; run the same "
            "command again to keep following it"
        )

    def _receipt(self, tx_hash: bytes) -> dict[str, Any] | None:
        try:
            return dict(self.w3.eth.get_transaction_receipt(tx_hash))  # type: ignore[arg-type]
        except TransactionNotFound:
            return None

    # ------------------------------------------------------------------------------ steps

    def run(self, bundle: Bundle, weights: ev.Weights) -> dict[str, Any]:
        """Take the submission as far as it goes: to ``awarded``, ``lost`` or ``failed``."""
        fingerprint = hashlib.sha256(json.dumps(weights.flat()).encode()).hexdigest()
        if self.state and self.state.get("weights_sha256") != fingerprint:
            raise SubmissionError(
                f"{self.path} holds a submission with other weights; finish it, or use another "
                "--state-dir"
            )
        if not self.state:
            self._save(
                version=STATE_VERSION,
                status="new",
                chain_id=self.chain_id,
                bounty_contract=self.bounty.address,
                bounty_id=self.target.bounty_id,
                researcher=self.researcher,
                weights_sha256=fingerprint,
            )
        while self.status not in ("awarded", "lost", "failed"):
            step = getattr(self, f"_from_{self.status}")
            step(bundle, weights)
        return self.state

    def _check_open(self) -> Any:
        b = self._bounty()
        status, winner = int(b[2]), str(b[-1])
        if status == AWARDED:
            if winner.lower() == self.researcher.lower():
                return b
            self._save(status="lost", error=f"bounty already awarded to {winner}")
        elif status == RECLAIMED:
            self._save(status="lost", error="bounty reclaimed by its sponsor after its deadline")
        return b

    def _from_new(self, bundle: Bundle, weights: ev.Weights) -> None:
        b = self._check_open()
        if self.status != "new":
            return
        # Bounty: sponsor, deadline, status, contextScale, asset, version, modelId, minMetric, …
        model_id, version, min_metric = bytes(b[6]), int(b[5]), int(b[7])
        registry = self.w3.eth.contract(
            address=self.bounty.functions.registry().call(), abi=_abi("ModelRegistry")
        )
        onchain = registry.functions.getModelVersion(model_id, version).call()
        if bytes(onchain[9]).hex() != bundle.manifest["sha256"]["vk"]:
            raise SubmissionError(
                "the bounty's evaluation circuit is not this bundle (verifying keys differ): "
                "pass the benchmark's published bundle with --bundle"
            )
        context = ev.submission_context(
            self.chain_id, self.bounty.address, self.target.bounty_id, self.researcher
        )
        size = ev.benchmark_size(bundle)
        self.echo(f"proving the model's accuracy on the {size}-patient benchmark …")
        work = self.path.parent / "work"
        result = self.prove(bundle, weights, context, work)
        os.replace(result.proof.path, self.proof_path)
        self.echo(f"  {result.correct}/{result.size} right (the bounty needs {min_metric})")
        if result.correct < min_metric:
            self._save(
                status="failed",
                error=f"the model classifies {result.correct} of {result.size} patients right; "
                f"the bounty needs {min_metric}: nothing was sent",
            )
            return
        self._save(
            status="proved",
            correct=result.correct,
            size=result.size,
            weights_commitment=hex(result.weights_commitment),
            salt="0x" + secrets.token_hex(32),
        )
        _crash("proved")

    def _commitment(self) -> bytes:
        return submission_commitment(
            self.target.bounty_id,
            self.researcher,
            int(self.state["weights_commitment"], 16),
            _bytes(self.state["salt"]),
        )

    def _from_proved(self, bundle: Bundle, weights: ev.Weights) -> None:
        if self._committed_block():
            return
        self._send("commit_tx", self.bounty.functions.commit(self._commitment()))
        self._save(status="commit_signed")
        _crash("commit_signed")

    def _committed_block(self) -> int:
        block = int(self.bounty.functions.commitBlock(self._commitment()).call())
        if block:
            self._save(status="committed", commit_block=block)
            self.echo(f"committed in block {block}")
        return block

    def _from_commit_signed(self, bundle: Bundle, weights: ev.Weights) -> None:
        if self._committed_block():
            return
        receipt = self._broadcast("commit_tx")
        _crash("commit_sent")
        if receipt is None or (receipt["status"] == 1 and not self._committed_block()):
            self._save(status="proved")  # nonce reused elsewhere: sign again
        elif receipt["status"] != 1:
            raise SubmissionError(f"commit transaction {self.state['commit_tx']['hash']} reverted")

    def _from_committed(self, bundle: Bundle, weights: ev.Weights) -> None:
        _crash("committed")
        self._check_open()
        if self.status != "committed":
            return
        if self._winner_is_me():
            return
        ready = self.state["commit_block"] + int(self.bounty.functions.minRevealDelay().call())
        deadline = time.monotonic() + self.timeout
        while (head := self.w3.eth.block_number) < ready:
            if time.monotonic() > deadline:
                raise SubmissionError(
                    f"block {ready} (reveal delay) not reached within {self.timeout:.0f} s "
                    f"(head {head}); run the same command again later"
                )
            self.echo(f"waiting for block {ready} to reveal (head {head}) …")
            time.sleep(max(self.poll, 1.0))
        from prover.zk.proof import Proof

        loaded = Proof.load(self.proof_path)
        call = self.bounty.functions.reveal(
            self.target.bounty_id,
            self.researcher,
            int(self.state["weights_commitment"], 16),
            _bytes(self.state["salt"]),
            loaded.proof,
            list(loaded.instances),
        )
        try:
            self._send("reveal_tx", call)
        except SubmissionError as exc:
            self._save(status="failed", error=str(exc))
            return
        self._save(status="reveal_signed")
        _crash("reveal_signed")

    def _winner_is_me(self) -> bool:
        b = self._bounty()
        if int(b[2]) == AWARDED and str(b[-1]).lower() == self.researcher.lower():
            self._award_from_logs(int(b[8]))
            return True
        return False

    def _award_from_logs(self, amount: int) -> None:
        receipt = None
        if "reveal_tx" in self.state:
            receipt = self._receipt(_bytes(self.state["reveal_tx"]["hash"]))
        award = {"amount": amount, "block": None, "gas": None}
        if receipt is not None:
            award = {"amount": amount, "block": receipt["blockNumber"], "gas": receipt["gasUsed"]}
        self._save(status="awarded", award=award)
        self.echo(f"bounty {self.target.bounty_id} awarded: {amount} wei to {self.researcher}")

    def _from_reveal_signed(self, bundle: Bundle, weights: ev.Weights) -> None:
        if self._winner_is_me():
            return
        self._check_open()
        if self.status != "reveal_signed":
            return
        receipt = self._broadcast("reveal_tx")
        _crash("reveal_sent")
        if receipt is None:
            self._save(status="committed")  # nonce reused elsewhere: sign the reveal again
        elif receipt["status"] != 1:
            self._save(status="failed", error=f"reveal {self.state['reveal_tx']['hash']} reverted")
        elif not self._winner_is_me():
            self._check_open()


def load_researcher(
    keystore: Path | None, password_file: Path | None, key_env: str | None
) -> LocalAccount:
    """The researcher's signing key: a keystore + password file, or a hex key in ``$key_env``."""
    from eth_account import Account

    if key_env:
        value = os.environ.get(key_env, "").strip()
        if not value:
            raise InvalidInput(f"${key_env} is empty: put the researcher's private key in it")
        try:
            return Account.from_key(value)
        except (ValueError, TypeError) as exc:
            raise InvalidInput(f"${key_env} is not a private key") from exc
    if keystore is None:
        raise InvalidInput("give --keystore (with --password-file) or --key-env")
    if password_file is None:
        raise InvalidInput("--keystore needs --password-file")
    try:
        key = Account.decrypt(json.loads(keystore.read_text()), password_file.read_text().strip())
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InvalidInput(
            f"cannot decrypt {keystore} with {password_file}: {type(exc).__name__}"
        ) from exc
    return Account.from_key(key)


def bounty_contract_of(deployment: Path) -> str:
    """The ResearchBounty address in a deployments file (``ape run deploy all`` writes it)."""
    try:
        return str(json.loads(deployment.read_text())["contracts"]["ResearchBounty"]["address"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InvalidInput(
            f"{deployment}: no ResearchBounty address ({type(exc).__name__})"
        ) from exc
