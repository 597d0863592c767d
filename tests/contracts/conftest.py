"""Fixtures for the contract tests.

Roles are ape test accounts (mnemonic ``test test ... junk``); hospitals are plain eth-account
keys (they only sign attestations). Deployments are session-scoped; ape's pytest plugin snapshots
and reverts the chain around every test, so each test starts from the deployed state.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from eth_account import Account
from eth_utils import keccak

from .eip712 import sign_attestation
from .helpers import (
    ACTIVE,
    AT_LEAST,
    DIAG_MODEL,
    ETH,
    EVAL_MODEL,
    ONE,
    ONNX_SHA,
    OUTPUT_SCALE,
    VK_SHA,
    b32,
    encode_signed,
    mock_proof,
)

# ------------------------------------------------------------------------------------------ roles


@pytest.fixture(scope="session")
def deployer(accounts):
    """Deploys everything; holds DEFAULT_ADMIN_ROLE and REGISTRAR_ROLE of the registry."""
    return accounts[0]


@pytest.fixture(scope="session")
def insurer(accounts):
    return accounts[1]


@pytest.fixture(scope="session")
def patient(accounts):
    """The policy holder."""
    return accounts[2]


@pytest.fixture(scope="session")
def relayer(accounts):
    return accounts[3]


@pytest.fixture(scope="session")
def dao(accounts):
    """A DAO member (token holder / voter / proposer)."""
    return accounts[4]


@pytest.fixture(scope="session")
def guardian(accounts):
    return accounts[5]


@pytest.fixture(scope="session")
def researcher(accounts):
    return accounts[6]


@pytest.fixture(scope="session")
def copier(accounts):
    """Front-runner / attacker."""
    return accounts[7]


@pytest.fixture(scope="session")
def stranger(accounts):
    return accounts[8]


@pytest.fixture(scope="session")
def hospital():
    """A hospital's signing key (an EOA that never sends transactions)."""
    return Account.from_key(keccak(text="zkcare test hospital"))


@pytest.fixture(scope="session")
def other_hospital():
    return Account.from_key(keccak(text="zkcare untrusted hospital"))


# ------------------------------------------------------------------------------------------ deployments


@pytest.fixture(scope="session")
def chain_id(chain):
    return chain.chain_id


@pytest.fixture(scope="session")
def verifier(project, deployer):
    return deployer.deploy(project.MockVerifier)


@pytest.fixture(scope="session")
def eval_verifier(project, deployer):
    return deployer.deploy(project.MockVerifier)


def code_hash(chain, address) -> bytes:
    return keccak(bytes(chain.provider.web3.eth.get_code(str(address))))


@pytest.fixture(scope="session")
def registry(project, chain, deployer, guardian, verifier, eval_verifier):
    reg = deployer.deploy(project.ModelRegistry, deployer)
    reg.grantRole(reg.REGISTRAR_ROLE(), deployer, sender=deployer)
    reg.grantRole(reg.GUARDIAN_ROLE(), guardian, sender=deployer)
    # Diagnostic model: instances = [inputCommitment, output] (one output)
    reg.registerModel(
        DIAG_MODEL,
        1,
        verifier,
        code_hash(chain, verifier),
        ONNX_SHA,
        VK_SHA,
        (2, 0, 1, 1, OUTPUT_SCALE),
        sender=deployer,
    )
    # Evaluation circuit (benchmark baked in): instances = [weightsCommitment, metric,
    # context_0 .. context_5]; outputs = metric + the 6 context limbs (helpers.eval_instances)
    reg.registerModel(
        EVAL_MODEL,
        1,
        eval_verifier,
        code_hash(chain, eval_verifier),
        ONNX_SHA,
        VK_SHA,
        (8, 0, 1, 7, OUTPUT_SCALE),
        sender=deployer,
    )
    assert reg.getModelVersion(DIAG_MODEL, 1).status == ACTIVE
    return reg


@pytest.fixture(scope="session")
def settlement(project, deployer, registry):
    return deployer.deploy(project.ClaimSettlement, registry, deployer)


@pytest.fixture(scope="session")
def bounty(project, deployer, registry):
    return deployer.deploy(project.ResearchBounty, registry, 1)


@pytest.fixture(scope="session")
def usdc(project, deployer):
    """6-decimal stablecoin."""
    return deployer.deploy(project.MockERC20, "USD Coin", "USDC", 6)


@pytest.fixture(scope="session")
def usdt(project, deployer):
    """USDT-like token whose transfer/transferFrom/approve return nothing."""
    return deployer.deploy(project.NoReturnToken)


@pytest.fixture(scope="session")
def fot(project, deployer):
    """Fee-on-transfer token: 1% of every transfer is burned."""
    return deployer.deploy(project.FeeOnTransferToken, 100)


# ------------------------------------------------------------------------------------------ factories


@pytest.fixture(scope="session")
def make_pool(settlement, insurer, hospital):
    """Create a pool in ``asset`` (ETH or a token with ``mint``), fund it and trust ``hospital``."""

    def make(asset: Any = ETH, fund: int = 10 * 10**18, trust: tuple = ()) -> int:
        receipt = settlement.createPool(asset, sender=insurer)
        pool_id = receipt.decode_logs(settlement.PoolCreated)[0].poolId
        if fund:
            if asset == ETH:
                settlement.fundPool(pool_id, fund, value=fund, sender=insurer)
            else:
                asset.mint(insurer, fund, sender=insurer)
                asset.approve(settlement, fund, sender=insurer)
                settlement.fundPool(pool_id, fund, sender=insurer)
        for h in (hospital, *trust):
            settlement.setHospitalTrust(pool_id, h.address, True, sender=insurer)
        return pool_id

    return make


@pytest.fixture(scope="session")
def make_product(settlement, insurer):
    """Product paying ``payout`` if output ``output`` compares to ``threshold`` (default: >= 0.5)."""

    def make(
        pool_id: int,
        *,
        threshold: int = ONE // 2,
        comparison: int = AT_LEAST,
        output: int = 0,
        payout: int = 10**18,
        model: bytes = DIAG_MODEL,
        version: int = 1,
    ) -> int:
        receipt = settlement.createProduct(
            pool_id, model, version, (comparison, output, threshold), payout, sender=insurer
        )
        return receipt.decode_logs(settlement.ProductCreated)[0].productId

    return make


@pytest.fixture(scope="session")
def make_policy(settlement, insurer, patient, chain):
    """Issue a policy (coverage reserved at issuance); expires in 30 days by default."""

    def make(
        product_id: int,
        *,
        holder: Any = None,
        coverage: int = 2 * 10**18,
        expiry: int | None = None,
    ) -> int:
        expiry = expiry if expiry is not None else chain.pending_timestamp + 30 * 86400
        receipt = settlement.issuePolicy(
            product_id, holder or patient, coverage, expiry, sender=insurer
        )
        return receipt.decode_logs(settlement.PolicyIssued)[0].policyId

    return make


@dataclass
class ClaimData:
    """Everything a claim needs, plus its ABI tuple."""

    policy_id: int
    hospital: str
    attested_at: int
    attestation_expiry: int
    record_nullifier: bytes
    input_commitment: int
    signature: bytes
    proof: bytes
    instances: list[int]

    def as_tuple(self) -> tuple:
        return (
            self.policy_id,
            self.hospital,
            self.attested_at,
            self.attestation_expiry,
            self.record_nullifier,
            self.input_commitment,
            self.signature,
            self.proof,
            self.instances,
        )


_counter = {"n": 0}


def fresh_commitment() -> int:
    """A fresh (salted) input commitment, as a field element."""
    _counter["n"] += 1
    return int.from_bytes(keccak(text=f"commitment-{_counter['n']}"), "big") >> 8


def pool_of(settlement: Any, policy_id: int) -> int:
    """The pool of ``policy_id`` (0 for an unknown policy), as the contract derives it."""
    return int(settlement.getProduct(settlement.getPolicy(policy_id).productId).poolId)


@pytest.fixture(scope="session")
def make_claim(settlement, hospital, chain, chain_id) -> Callable[..., ClaimData]:
    """Build a claim: instances [commitment, encode(output)], a mock proof, a hospital signature.

    Overrides let tests forge any part (signer key, domain, signed policy/pool/hospital, attested
    commitment, times, instances, proof). ``contract`` builds it for another ClaimSettlement.
    """

    def make(
        policy_id: int,
        output: int = ONE,
        *,
        record: bytes | None = None,
        commitment: int | None = None,
        attested_commitment: int | None = None,
        signer: Any = None,
        hospital_address: str | None = None,
        attested_at: int | None = None,
        expiry: int | None = None,
        sign_chain_id: int | None = None,
        sign_contract: str | None = None,
        sign_policy_id: int | None = None,
        sign_pool_id: int | None = None,
        sign_hospital: str | None = None,
        instances: list[int] | None = None,
        proof: bytes | None = None,
        contract: Any = None,
    ) -> ClaimData:
        target = contract or settlement
        commitment = fresh_commitment() if commitment is None else commitment
        record = record if record is not None else b32(f"record-{commitment}")
        attested = commitment if attested_commitment is None else attested_commitment
        instances = instances if instances is not None else [commitment, encode_signed(output)]
        proof = proof if proof is not None else mock_proof(instances)
        attested_at = attested_at if attested_at is not None else chain.pending_timestamp
        expiry = expiry if expiry is not None else chain.pending_timestamp + 3600
        address = hospital_address or (signer or hospital).address
        signature = sign_attestation(
            (signer or hospital).key,
            chain_id=sign_chain_id if sign_chain_id is not None else chain_id,
            verifying_contract=sign_contract or target.address,
            policy_id=sign_policy_id if sign_policy_id is not None else policy_id,
            pool_id=sign_pool_id if sign_pool_id is not None else pool_of(target, policy_id),
            hospital=sign_hospital or address,
            input_commitment=attested,
            record_nullifier=record,
            attested_at=attested_at,
            expiry=expiry,
        )
        return ClaimData(
            policy_id,
            address,
            attested_at,
            expiry,
            record,
            attested,
            signature,
            proof,
            instances,
        )

    return make


@pytest.fixture(scope="session")
def eth_setup(make_pool, make_product, make_policy):
    """An ETH pool (10 ETH), a product paying 1 ETH if output >= 0.5, and a 2 ETH policy."""
    pool_id = make_pool()
    product_id = make_product(pool_id)
    policy_id = make_policy(product_id)
    return pool_id, product_id, policy_id
