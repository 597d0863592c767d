// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {IERC1271} from "@openzeppelin/contracts/interfaces/IERC1271.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {Pausable} from "@openzeppelin/contracts/utils/Pausable.sol";

import {
    IModelRegistry,
    IModelRegistryBatch,
    IModelRegistryBatchErrors,
    IModelRegistryErrors
} from "./interfaces/IModelRegistry.sol";
import {Payouts} from "./Payouts.sol";

/// @title ClaimSettlement
/// @notice Parametric health insurance paid on zero-knowledge proofs of a diagnostic model's inference.
///
/// Flow: an insurer creates a pool (ETH or any ERC-20) and funds it; defines products (model version + payout rule on
/// the model's signed fixed-point outputs + payout amount); trusts hospitals; issues policies to holders. A claim is
/// policy + hospital attestation (EIP-712) + proof. Anyone (holder, relayer) may submit it; money only ever goes to the
/// policy holder.
///
/// Reserve accounting (chosen: reserve at issuance): issuing a policy reserves its full coverage out of the pool's
/// unreserved funds, so every issued policy is always payable and `reserved <= balance` holds at all times. Paid
/// claims consume the policy's reservation; after expiry anyone can release what is left (`releasePolicy`). The
/// insurer can withdraw only `balance - reserved`.
///
/// A claim pays `min(product.payout, remaining coverage)`. A valid proof whose outputs miss the product's rule is
/// recorded as denied (`ClaimDenied`) and consumes its nullifiers like a paid claim.
///
/// Payout rules (`PayoutRule`) name the output they read, so one model version with several outputs (e.g. a
/// classifier's logits) can back many products: `AtLeast`/`AtMost` compare output `rule.output` with
/// `rule.threshold` (in the model's fixed-point units); `ArgMaxIs` pays iff output `rule.output` is the largest (the
/// lowest index wins a tie), and takes no threshold (0). A rule is checked against the version's `outputCount` when
/// the product is created.
///
/// The rule is designed so that it can be compiled into the circuit instead: append a decision head to the model's
/// graph whose single public output is 1 when the rule holds and 0 otherwise, and register that version with
/// `outputCount = 1`; a product `AtLeast 1` on output 0 then reads only the decision, and no score reaches the chain.
/// (Today both forms are accepted; a later version will require the compiled form.)
///
/// Nullifiers are per policy: (policyId, recordNullifier) - the hospital's hash of the patient record - and
/// (policyId, inputCommitment) - what the proof is bound to - can each be claimed once. Per policy, not global: a
/// global commitment nullifier let anyone with a 1-wei pool, a self-trusted hospital key and a policy on the same model
/// replay a victim's public proof first and burn the victim's claim. Now a claim on policy P is only ever consumed by
/// an attestation for P (signed by a hospital P's pool trusts, naming P, that pool and that hospital, under this
/// contract's EIP-712 domain), so a replay on another pool, product, policy, contract or chain can neither block nor
/// pre-empt the rightful claim. Replaying the rightful claim itself only pays its holder. The same proof on two
/// policies needs a trusted hospital to attest it for each (double cover the holder bought).
///
/// Time: a claim lands while the policy is live (`block.timestamp <= expiry`), or up to `CLAIM_GRACE_PERIOD` after it
/// if its attestation was made while the policy was live (`attestedAt <= expiry`), so a claim held up by congestion or
/// a pause near expiry is not lost; `releasePolicy` waits out the grace. Every attestation is short-lived: its
/// `expiry` is at most `MAX_ATTESTATION_TTL` after its `attestedAt`.
///
/// Trust: distrusting a hospital rejects its attestations made from then on (`attestedAt >= distrustedAt`) and keeps
/// those it made while trusted, so an insurer cannot void valid claims in flight by distrusting their hospital. Sound
/// against a compromised hospital key although `attestedAt` is the signer's word: a backdated attestation must still
/// expire within `MAX_ATTESTATION_TTL` of its `attestedAt`, hence before `distrustedAt + MAX_ATTESTATION_TTL` - the
/// distrust is complete after at most that delay (as a time lock would be), and pause is the immediate emergency
/// brake. Money only ever goes to policy holders, so even inside that window a stolen key pays no one but holders.
///
/// Batches: `submitClaims` runs each claim in a self-call with a fixed `CLAIM_GAS_STIPEND` and checks before each claim
/// that the stipend is available (else `ClaimSettlementBatchGasTooLow`); ERC-1271 hospitals are asked with a
/// `staticcall` bounded by `ERC1271_GAS_LIMIT`. A gas-burning wallet fails only its own claim (`ClaimRejected`).
/// `submitClaimsBatched` is the cheap path for claims on one model version with a registered batch verifier: every
/// claim is checked as `submitClaim` checks it, all proofs are verified in one `ModelRegistry.verifyBatch` call (one
/// pairing), then each claim is paid or denied. It is all or none: any invalid claim reverts the whole call (a bad
/// proof with the registry's `ModelRegistryBatchRejected(modelId, version, index)`), and the sender then isolates the
/// bad claim (re-sends the claims singly, through `submitClaims`, or without the named index).
///
/// Pause (`PAUSER_ROLE`) blocks claims, policy issuance, releases and withdrawals of unreserved funds (nothing a
/// held-up claim relies on can leave); funding and credit withdrawals stay open.
contract ClaimSettlement is AccessControl, Pausable, EIP712, Payouts, IModelRegistryErrors, IModelRegistryBatchErrors {
    /// @notice Role allowed to pause and unpause claims and policy issuance.
    bytes32 public constant PAUSER_ROLE = keccak256("PAUSER_ROLE");
    /// @notice EIP-712 type hash of a hospital's input-provenance attestation (`Attestation`).
    bytes32 public constant ATTESTATION_TYPEHASH = keccak256(
        "Attestation(uint256 policyId,uint256 poolId,address hospital,uint256 inputCommitment,bytes32 recordNullifier,"
        "uint64 attestedAt,uint64 expiry)"
    );
    /// @notice How long after its policy's expiry a claim attested while the policy was live may still land.
    uint256 public constant CLAIM_GRACE_PERIOD = 3 days;
    /// @notice The longest an attestation may be valid: `expiry <= attestedAt + MAX_ATTESTATION_TTL`.
    uint256 public constant MAX_ATTESTATION_TTL = 3 days;
    /// @notice Gas each claim of a `submitClaims` batch runs with (about twice a real EZKL claim's ~0.58M).
    uint256 public constant CLAIM_GAS_STIPEND = 1_200_000;
    /// @notice Gas an ERC-1271 hospital wallet gets to answer `isValidSignature`.
    uint256 public constant ERC1271_GAS_LIMIT = 100_000;
    /// @dev Gas kept back per batch claim for encoding its calldata and reporting it (on top of the 1/64 rule).
    uint256 private constant _BATCH_CLAIM_OVERHEAD = 60_000;

    /// @notice How a product's rule reads the model's decoded outputs.
    enum Comparison {
        AtLeast, // pay if outputs[rule.output] >= rule.threshold
        AtMost, // pay if outputs[rule.output] <= rule.threshold
        ArgMaxIs // pay if the arg-max of outputs (lowest index on ties) is rule.output; rule.threshold must be 0
    }

    /// @notice A product's payout rule: which output it reads (`output` < the version's `outputCount`), how, and the
    /// threshold in the model's fixed-point units (0 for `ArgMaxIs`).
    struct PayoutRule {
        Comparison comparison;
        uint16 output;
        int128 threshold;
    }

    /// @notice A funded pool. `reserved <= balance` always; `balance` is what the contract holds for the pool.
    struct Pool {
        address insurer;
        address asset; // address(0) = ETH
        uint128 balance;
        uint128 reserved;
    }

    /// @notice A product: model version + payout rule + payout per claim (3 storage slots).
    struct Product {
        // slot 0
        bytes32 modelId;
        // slot 1
        uint64 poolId;
        uint32 version;
        bool retired;
        uint128 payout;
        // slot 2
        PayoutRule rule;
    }

    /// @notice A policy. `reserved` is the coverage still available (0 once exhausted or released).
    struct Policy {
        address holder;
        uint64 expiry; // claims accepted while block.timestamp <= expiry
        uint32 productId;
        uint128 reserved;
        uint128 paid;
    }

    /// @notice What a hospital signs (EIP-712) for one claim: this record, committed as `inputCommitment`, backs a
    /// claim on `policyId` of pool `poolId`, attested by `hospital` at `attestedAt` (unix seconds) and valid while
    /// `block.timestamp <= expiry`.
    struct Attestation {
        uint256 policyId;
        uint256 poolId;
        address hospital;
        uint256 inputCommitment;
        bytes32 recordNullifier;
        uint64 attestedAt;
        uint64 expiry;
    }

    /// @notice A pool's trust in a hospital: `trusted` now, or else attestations made before `distrustedAt` (0: never
    /// trusted) still count.
    struct HospitalTrust {
        bool trusted;
        uint64 distrustedAt;
    }

    /// @notice A claim: the policy, the hospital's attestation and the proof. The attestation's `poolId` is the
    /// policy's pool (not sent).
    struct Claim {
        uint256 policyId;
        address hospital; // EOA (ECDSA) or contract wallet (ERC-1271)
        uint64 attestedAt; // when the hospital attested (its word); decides the grace after the policy's expiry
        uint64 attestationExpiry; // attestation valid while block.timestamp <= attestationExpiry
        bytes32 recordNullifier;
        uint256 inputCommitment; // attested commitment; must equal the proof's input-commitment instance
        bytes signature;
        bytes proof;
        uint256[] instances;
    }

    /// @dev A payout of `submitClaimsBatched`, pushed after every claim's effects.
    struct PendingPayout {
        address asset;
        address holder;
        uint128 amount;
    }

    struct Counters {
        uint64 pools;
        uint32 products;
        uint64 policies;
        uint64 claims;
    }

    IModelRegistry private immutable _registry;
    Counters private _counters;
    mapping(uint256 poolId => Pool) private _pools;
    mapping(uint256 productId => Product) private _products;
    mapping(uint256 policyId => Policy) private _policies;
    mapping(uint256 poolId => mapping(address hospital => HospitalTrust)) private _hospitalTrust;
    mapping(uint256 policyId => mapping(bytes32 recordNullifier => uint256 claimId)) private _recordClaims;
    mapping(uint256 policyId => mapping(uint256 inputCommitment => uint256 claimId)) private _commitmentClaims;

    /// @notice Emitted after `insurer` created pool `poolId` in `asset`.
    event PoolCreated(uint256 indexed poolId, address indexed insurer, address indexed asset);
    /// @notice Emitted after pool `poolId` received `amount` (the amount that actually arrived) from `funder`.
    event PoolFunded(uint256 indexed poolId, address indexed funder, uint256 amount);
    /// @notice Emitted after the insurer withdrew `amount` of unreserved funds to `to`.
    event PoolWithdrawn(uint256 indexed poolId, address indexed to, uint256 amount);
    /// @notice Emitted after the insurer changed whether it trusts `hospital`'s attestations for pool `poolId`
    /// (a distrust keeps the attestations made before this block's timestamp).
    event HospitalTrustUpdated(uint256 indexed poolId, address indexed hospital, bool trusted);
    /// @notice Emitted after a product was created; `comparison`, `output` and `threshold` are its `PayoutRule`.
    event ProductCreated(
        uint256 indexed productId,
        uint256 indexed poolId,
        bytes32 indexed modelId,
        uint32 version,
        Comparison comparison,
        uint16 output,
        int128 threshold,
        uint128 payout
    );
    /// @notice Emitted after a product was retired (no new policies; existing policies stay claimable).
    event ProductRetired(uint256 indexed productId);
    /// @notice Emitted after a policy was issued and its coverage reserved.
    event PolicyIssued(
        uint256 indexed policyId, uint256 indexed productId, address indexed holder, uint256 coverage, uint64 expiry
    );
    /// @notice Emitted after the unused reservation of an expired policy was released back to its pool.
    event PolicyReleased(uint256 indexed policyId, uint256 amount);
    /// @notice Emitted after a claim was accepted and `amount` was paid (pushed, or credited if the push failed) to
    /// `holder`. It never carries a model output: whether a claim pays is public, the score behind it is not.
    event ClaimPaid(uint256 indexed claimId, uint256 indexed policyId, address indexed holder, uint256 amount);
    /// @notice Emitted after a claim with a valid proof was recorded as denied: its outputs missed the rule. Like
    /// `ClaimPaid`, it carries no model output and no threshold.
    event ClaimDenied(uint256 indexed claimId, uint256 indexed policyId);
    /// @notice Emitted by `submitClaims` for a claim that was skipped; `reason` is its revert data.
    event ClaimRejected(uint256 indexed index, uint256 indexed policyId, bytes reason);

    /// @dev The registry address is zero or the admin is zero.
    error ClaimSettlementZeroAddress();
    /// @dev No pool with this id.
    error ClaimSettlementUnknownPool(uint256 poolId);
    /// @dev No product with this id.
    error ClaimSettlementUnknownProduct(uint256 productId);
    /// @dev No policy with this id.
    error ClaimSettlementUnknownPolicy(uint256 policyId);
    /// @dev The caller is not the pool's insurer.
    error ClaimSettlementNotInsurer(uint256 poolId, address account);
    /// @dev The model version is not active in the registry.
    error ClaimSettlementModelNotActive(bytes32 modelId, uint32 version);
    /// @dev The product was retired.
    error ClaimSettlementProductRetired(uint256 productId);
    /// @dev Invalid policy parameters (zero holder or coverage, expiry not in the future).
    error ClaimSettlementInvalidPolicy(address holder, uint256 coverage, uint64 expiry);
    /// @dev Invalid product parameters (zero payout).
    error ClaimSettlementInvalidProduct(uint128 payout);
    /// @dev The payout rule reads an output the model version does not have (`output >= outputCount`), or is an
    /// `ArgMaxIs` with a nonzero threshold. `comparison` is the `Comparison` as a number.
    error ClaimSettlementInvalidRule(uint8 comparison, uint16 output, int128 threshold);
    /// @dev The pool's unreserved funds (`available`) do not cover `requested`.
    error ClaimSettlementInsufficientFunds(uint256 poolId, uint256 requested, uint256 available);
    /// @dev The policy expired at `expiry`, and its grace (`CLAIM_GRACE_PERIOD`) is over too.
    error ClaimSettlementPolicyExpired(uint256 policyId, uint64 expiry);
    /// @dev The policy expired at `expiry`, and the attestation was made after that (`attestedAt`): no grace.
    error ClaimSettlementAttestedAfterExpiry(uint256 policyId, uint64 expiry, uint64 attestedAt);
    /// @dev The policy cannot be released yet: it expires at `expiry`, then claims have `CLAIM_GRACE_PERIOD`.
    error ClaimSettlementPolicyNotExpired(uint256 policyId, uint64 expiry);
    /// @dev The policy's coverage is exhausted or was released.
    error ClaimSettlementCoverageExhausted(uint256 policyId);
    /// @dev The hospital is not trusted by the policy's pool (or was distrusted before the attestation was made).
    error ClaimSettlementUntrustedHospital(uint256 poolId, address hospital);
    /// @dev The attestation expired at `expiry`.
    error ClaimSettlementAttestationExpired(uint64 expiry);
    /// @dev The attestation is valid for longer than `MAX_ATTESTATION_TTL` after `attestedAt`.
    error ClaimSettlementAttestationTooLong(uint64 attestedAt, uint64 expiry);
    /// @dev The signature is not the hospital's over this contract's EIP-712 attestation (wrong signer, data, chain
    /// id or verifying contract).
    error ClaimSettlementInvalidAttestation(address hospital);
    /// @dev This patient record was already claimed on this policy (claim `claimId`).
    error ClaimSettlementRecordAlreadyClaimed(uint256 policyId, bytes32 recordNullifier, uint256 claimId);
    /// @dev This input commitment (hence this proof) was already used on this policy by claim `claimId`.
    error ClaimSettlementCommitmentAlreadyUsed(uint256 policyId, uint256 inputCommitment, uint256 claimId);
    /// @dev The proof's input-commitment instance differs from the attested commitment.
    error ClaimSettlementCommitmentMismatch(uint256 attested, uint256 proven);
    /// @dev `settleFromBatch` may only be called by this contract.
    error ClaimSettlementOnlySelf();
    /// @dev `submitClaims` has `gasLeft` before claim `index`, less than the `needed` for its stipend; send more gas
    /// (or fewer claims).
    error ClaimSettlementBatchGasTooLow(uint256 index, uint256 gasLeft, uint256 needed);
    /// @dev `submitClaimsBatched` was given no claim.
    error ClaimSettlementEmptyBatch();
    /// @dev Claim `index` of a `submitClaimsBatched` call is on model `modelId` version `version`, not on the version of
    /// claim 0: one batch verifies proofs of one model version.
    error ClaimSettlementBatchMixedModels(uint256 index, bytes32 modelId, uint32 version);

    /// @param registry_ The model registry that verifies proofs.
    /// @param admin Receives `DEFAULT_ADMIN_ROLE` and `PAUSER_ROLE`.
    constructor(IModelRegistry registry_, address admin) EIP712("zkcare ClaimSettlement", "1") {
        if (address(registry_) == address(0) || admin == address(0)) revert ClaimSettlementZeroAddress();
        _registry = registry_;
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        _grantRole(PAUSER_ROLE, admin);
    }

    modifier onlyInsurer(uint256 poolId) {
        _checkInsurer(poolId);
        _;
    }

    // ------------------------------------------------------------------------------------------------ insurer

    /// @notice Creates a pool in `asset` (address(0) for ETH); the caller becomes its insurer.
    function createPool(address asset) external returns (uint256 poolId) {
        poolId = ++_counters.pools;
        _pools[poolId] = Pool({insurer: msg.sender, asset: asset, balance: 0, reserved: 0});
        emit PoolCreated(poolId, msg.sender, asset);
    }

    /// @notice Adds `amount` to a pool (anyone may fund). For ETH send `msg.value == amount`; for ERC-20 approve first.
    /// The pool is credited with what actually arrived (fee-on-transfer tokens).
    function fundPool(uint256 poolId, uint256 amount) external payable nonReentrant {
        Pool storage pool = _pools[poolId];
        address asset = pool.asset;
        if (pool.insurer == address(0)) revert ClaimSettlementUnknownPool(poolId);
        uint128 received = _pullIn(asset, amount, msg.value);
        pool.balance += received;
        emit PoolFunded(poolId, msg.sender, received);
    }

    /// @notice Withdraws unreserved funds (`balance - reserved`) of the caller's pool to `to`.
    /// Closed while paused: claims cannot land then, so funds they rely on stay in the pool.
    function withdrawFromPool(uint256 poolId, uint256 amount, address to)
        external
        nonReentrant
        whenNotPaused
        onlyInsurer(poolId)
    {
        if (to == address(0)) revert PayoutsZeroRecipient();
        Pool storage pool = _pools[poolId];
        uint256 available = pool.balance - pool.reserved;
        if (amount == 0) revert PayoutsInvalidAmount(amount);
        if (amount > available) revert ClaimSettlementInsufficientFunds(poolId, amount, available);
        pool.balance -= uint128(amount);
        emit PoolWithdrawn(poolId, to, amount);
        _transferOut(pool.asset, to, amount);
    }

    /// @notice Trusts (or distrusts) `hospital`'s attestations for the caller's pool (insurer only). Trust applies at
    /// once. A distrust rejects the hospital's attestations made from this block's timestamp on and keeps those made
    /// while it was trusted (they expire within `MAX_ATTESTATION_TTL`); distrusting again keeps the first time.
    function setHospitalTrust(uint256 poolId, address hospital, bool trusted) external onlyInsurer(poolId) {
        if (trusted) {
            _hospitalTrust[poolId][hospital] = HospitalTrust({trusted: true, distrustedAt: 0});
        } else if (_hospitalTrust[poolId][hospital].trusted) {
            uint64 now_ = uint64(block.timestamp);
            _hospitalTrust[poolId][hospital] = HospitalTrust({trusted: false, distrustedAt: now_});
        }
        emit HospitalTrustUpdated(poolId, hospital, trusted);
    }

    /// @notice Creates a product on the caller's pool: pay `payout` when the model's decoded outputs satisfy `rule`
    /// (see `Comparison`; thresholds are in the outputs' fixed-point units).
    /// @dev Reverts with `ClaimSettlementModelNotActive` unless the version is active, `ClaimSettlementInvalidProduct`
    /// on a zero payout, and `ClaimSettlementInvalidRule` if `rule.output` is not below the version's `outputCount`
    /// or an `ArgMaxIs` rule has a nonzero threshold.
    function createProduct(uint256 poolId, bytes32 modelId, uint32 version, PayoutRule calldata rule, uint128 payout)
        external
        onlyInsurer(poolId)
        returns (uint256 productId)
    {
        if (!_registry.isActive(modelId, version)) revert ClaimSettlementModelNotActive(modelId, version);
        if (payout == 0) revert ClaimSettlementInvalidProduct(payout);
        uint256 outputCount = _registry.getModelVersion(modelId, version).outputCount;
        if (rule.output >= outputCount || (rule.comparison == Comparison.ArgMaxIs && rule.threshold != 0)) {
            revert ClaimSettlementInvalidRule(uint8(rule.comparison), rule.output, rule.threshold);
        }
        productId = ++_counters.products;
        _products[productId] = Product({
            modelId: modelId,
            poolId: uint64(poolId),
            version: version,
            retired: false,
            payout: payout,
            rule: rule
        });
        emit ProductCreated(
            productId, poolId, modelId, version, rule.comparison, rule.output, rule.threshold, payout
        );
    }

    /// @notice Retires a product: no new policies; existing policies remain claimable until they expire.
    function retireProduct(uint256 productId) external {
        Product storage product = _products[productId];
        uint256 poolId = product.poolId;
        if (poolId == 0) revert ClaimSettlementUnknownProduct(productId);
        _checkInsurer(poolId);
        if (product.retired) revert ClaimSettlementProductRetired(productId);
        product.retired = true;
        emit ProductRetired(productId);
    }

    /// @notice Issues a policy to `holder`, reserving its full `coverage` from the pool's unreserved funds.
    /// @param expiry Last timestamp (inclusive) at which claims are accepted.
    function issuePolicy(uint256 productId, address holder, uint256 coverage, uint64 expiry)
        external
        whenNotPaused
        returns (uint256 policyId)
    {
        Product storage product = _products[productId];
        uint256 poolId = product.poolId;
        if (poolId == 0) revert ClaimSettlementUnknownProduct(productId);
        _checkInsurer(poolId);
        if (product.retired) revert ClaimSettlementProductRetired(productId);
        if (holder == address(0) || coverage == 0 || expiry <= block.timestamp) {
            revert ClaimSettlementInvalidPolicy(holder, coverage, expiry);
        }
        Pool storage pool = _pools[poolId];
        uint256 available = pool.balance - pool.reserved;
        if (coverage > available) revert ClaimSettlementInsufficientFunds(poolId, coverage, available);
        pool.reserved += uint128(coverage); // coverage <= available < 2^128
        policyId = ++_counters.policies;
        _policies[policyId] = Policy({
            holder: holder,
            expiry: expiry,
            productId: uint32(productId),
            reserved: uint128(coverage),
            paid: 0
        });
        emit PolicyIssued(policyId, productId, holder, coverage, expiry);
    }

    /// @notice After a policy expired and its claims' grace (`CLAIM_GRACE_PERIOD`) is over, returns its unused
    /// reservation to the pool (anyone may call). Closed while paused, so a claim held up by a pause is not lost to a
    /// release.
    function releasePolicy(uint256 policyId) external whenNotPaused {
        Policy storage policy = _policies[policyId];
        if (policy.holder == address(0)) revert ClaimSettlementUnknownPolicy(policyId);
        uint64 expiry = policy.expiry;
        if (block.timestamp <= expiry + CLAIM_GRACE_PERIOD) revert ClaimSettlementPolicyNotExpired(policyId, expiry);
        uint128 amount = policy.reserved;
        if (amount == 0) revert ClaimSettlementCoverageExhausted(policyId);
        policy.reserved = 0;
        _pools[_products[policy.productId].poolId].reserved -= amount;
        emit PolicyReleased(policyId, amount);
    }

    // ------------------------------------------------------------------------------------------------ pauser

    /// @notice Pauses claims and policy issuance.
    function pause() external onlyRole(PAUSER_ROLE) {
        _pause();
    }

    /// @notice Resumes claims and policy issuance.
    function unpause() external onlyRole(PAUSER_ROLE) {
        _unpause();
    }

    // ------------------------------------------------------------------------------------------------ claims

    /// @notice Settles one claim: pays the holder (`ClaimPaid`) or records a denial (`ClaimDenied`); reverts with a
    /// named error on anything invalid.
    /// @return claimId The new claim's id.
    /// @return amount The amount paid (0 when denied).
    function submitClaim(Claim calldata claim)
        external
        nonReentrant
        whenNotPaused
        returns (uint256 claimId, uint256 amount)
    {
        return _settle(claim);
    }

    /// @notice Settles many claims in one transaction (anyone may call). Claims are independent: an invalid claim does
    /// not revert the batch; it is skipped and reported with `ClaimRejected(index, policyId, revertData)` (empty data
    /// when it ran out of its `CLAIM_GAS_STIPEND`). Reverts with `ClaimSettlementBatchGasTooLow` if the transaction
    /// lacks the gas to give the next claim its full stipend, so a claim is never failed for the sender's gas limit.
    /// @return claimIds Per claim, its id, or 0 when it was rejected.
    function submitClaims(Claim[] calldata claims)
        external
        nonReentrant
        whenNotPaused
        returns (uint256[] memory claimIds)
    {
        uint256 n = claims.length;
        claimIds = new uint256[](n);
        uint256 needed = CLAIM_GAS_STIPEND + CLAIM_GAS_STIPEND / 63 + _BATCH_CLAIM_OVERHEAD;
        for (uint256 i; i < n; ++i) {
            uint256 left = gasleft();
            if (left < needed) revert ClaimSettlementBatchGasTooLow(i, left, needed);
            try this.settleFromBatch{gas: CLAIM_GAS_STIPEND}(claims[i]) returns (uint256 claimId) {
                claimIds[i] = claimId;
            } catch (bytes memory reason) {
                emit ClaimRejected(i, claims[i].policyId, reason);
            }
        }
    }

    /// @notice Internal hook of `submitClaims` (an external self-call, so that one claim can be rolled back alone).
    /// Reverts unless called by this contract; runs under `submitClaims`' reentrancy lock.
    /// @return claimId The new claim's id.
    function settleFromBatch(Claim calldata claim) external returns (uint256 claimId) {
        if (msg.sender != address(this)) revert ClaimSettlementOnlySelf();
        (claimId,) = _settle(claim);
    }

    /// @notice Settles claims on one model version in one transaction with one batch verification (anyone may call):
    /// cheaper per claim than `submitClaim`/`submitClaims` when the version has a batch verifier registered in the
    /// registry (`getBatchVerifier`). Each claim is checked like `submitClaim` checks it (policy, grace, coverage,
    /// attestation, nullifiers - also against the earlier claims of the batch), then all proofs are verified by
    /// `ModelRegistry.verifyBatch`, then each claim is paid (`ClaimPaid`) or denied (`ClaimDenied`) by its outputs, in
    /// order, with the same claim ids, events and amounts as `submitClaim` one after the other (the pushes follow all
    /// of them, so a `PayoutCredited` for a holder that refused ETH comes after the last `ClaimPaid`).
    /// @dev All or none: any invalid claim reverts the whole call with the named error of that claim (a bad proof:
    /// `ModelRegistryBatchRejected(modelId, version, index)`, `index = type(uint256).max` when only the combined
    /// pairing failed), and nothing is recorded; the sender then isolates the bad claim. Also reverts with
    /// `ClaimSettlementEmptyBatch`, `ClaimSettlementBatchMixedModels` (claims on different model versions) and
    /// `ModelRegistryNoBatchVerifier`. Checks, effects (nullifiers, accounting), then the payouts' pushes.
    /// @return claimIds Per claim, its new id (consecutive).
    function submitClaimsBatched(Claim[] calldata claims)
        external
        nonReentrant
        whenNotPaused
        returns (uint256[] memory claimIds)
    {
        uint256 n = claims.length;
        if (n == 0) revert ClaimSettlementEmptyBatch();
        Product[] memory products = new Product[](n);
        claimIds = new uint256[](n);
        uint256 lastId = _counters.claims;
        for (uint256 i; i < n; ++i) {
            Claim calldata claim = claims[i];
            (, Product memory product) = _checkClaim(claim);
            if (i != 0 && (product.modelId != products[0].modelId || product.version != products[0].version)) {
                revert ClaimSettlementBatchMixedModels(i, product.modelId, product.version);
            }
            // Effects before the (static) registry call: the nullifiers are spent now, so a later claim of this batch
            // that reuses them is refused like a replay; a failed batch reverts them all.
            uint256 claimId = ++lastId;
            _recordClaims[claim.policyId][claim.recordNullifier] = claimId;
            _commitmentClaims[claim.policyId][claim.inputCommitment] = claimId;
            (claimIds[i], products[i]) = (claimId, product);
        }
        _counters.claims = uint64(lastId); // lastId <= claims so far + n, far below 2^64

        (uint256[] memory commitments, int256[][] memory outputs) =
            _verifyBatch(claims, products[0].modelId, products[0].version);

        PendingPayout[] memory payouts = new PendingPayout[](n);
        for (uint256 i; i < n; ++i) {
            payouts[i] = _settleVerified(claims[i], products[i], claimIds[i], commitments[i], outputs[i]);
        }
        for (uint256 i; i < n; ++i) {
            PendingPayout memory payout = payouts[i];
            if (payout.amount != 0) _pushOrCredit(payout.asset, payout.holder, payout.amount);
        }
    }

    // The payout rule needs the verified outputs, so claim effects necessarily follow the registry call. Safe because
    // the registry is an immutable, trusted contract (set at deployment) whose `verify` only reads state and calls the
    // registered verifier, and every path into `_settle` holds the nonReentrant lock (`settleFromBatch` is self-only).
    // slither-disable-next-line reentrancy-no-eth
    function _settle(Claim calldata claim) private returns (uint256 claimId, uint256 amount) {
        uint256 policyId = claim.policyId;
        (Policy memory policy, Product memory product) = _checkClaim(claim);
        int256[] memory outputs = _verifyProof(claim, product);

        // Effects: the claim consumes its nullifiers whether it is paid or denied.
        claimId = ++_counters.claims;
        _recordClaims[policyId][claim.recordNullifier] = claimId;
        _commitmentClaims[policyId][claim.inputCommitment] = claimId;

        (bool eligible,) = _applyRule(product.rule, outputs);
        if (!eligible) {
            emit ClaimDenied(claimId, policyId);
            return (claimId, 0);
        }
        address asset;
        (amount, asset) = _recordPayment(policy, product, claimId, policyId);
        _pushOrCredit(asset, policy.holder, amount);
    }

    /// @dev Every check of a claim before its proof: policy (known, live or in its grace, coverage left), attestation,
    /// nullifiers. Returns the policy and its product, each read once.
    function _checkClaim(Claim calldata claim) private view returns (Policy memory policy, Product memory product) {
        uint256 policyId = claim.policyId;
        policy = _policies[policyId]; // both slots, read once
        if (policy.holder == address(0)) revert ClaimSettlementUnknownPolicy(policyId);
        if (block.timestamp > policy.expiry) _checkGrace(claim, policyId, policy.expiry);
        if (policy.reserved == 0) revert ClaimSettlementCoverageExhausted(policyId);
        product = _products[policy.productId]; // three slots, read once
        _checkAttestation(claim, product.poolId);
        _checkNullifiers(claim);
    }

    /// @dev A batch claim after `verifyBatch`: binds the proof to the attested commitment, applies the rule and
    /// records the payment (or the denial). The policy is read again: an earlier claim of the batch may have used its
    /// coverage, and a claim on an exhausted policy is refused as `submitClaim` would refuse it.
    function _settleVerified(
        Claim calldata claim,
        Product memory product,
        uint256 claimId,
        uint256 provenCommitment,
        int256[] memory outputs
    ) private returns (PendingPayout memory payout) {
        if (provenCommitment != claim.inputCommitment) {
            revert ClaimSettlementCommitmentMismatch(claim.inputCommitment, provenCommitment);
        }
        uint256 policyId = claim.policyId;
        Policy memory policy = _policies[policyId];
        if (policy.reserved == 0) revert ClaimSettlementCoverageExhausted(policyId);
        (bool eligible,) = _applyRule(product.rule, outputs);
        if (!eligible) {
            emit ClaimDenied(claimId, policyId);
            return payout;
        }
        (uint128 amount, address asset) = _recordPayment(policy, product, claimId, policyId);
        payout = PendingPayout({asset: asset, holder: policy.holder, amount: amount});
    }

    /// @dev Applies a product's rule to the verified outputs. `value` is what the rule read: output `rule.output`, or
    /// for `ArgMaxIs` the arg-max index (lowest on ties). `rule.output < outputs.length` was checked at creation
    /// against the version's `outputCount`, which the registry never changes.
    function _applyRule(PayoutRule memory rule, int256[] memory outputs)
        private
        pure
        returns (bool eligible, int256 value)
    {
        if (rule.comparison == Comparison.ArgMaxIs) {
            uint256 best = 0;
            int256 bestValue = outputs[0];
            uint256 n = outputs.length;
            for (uint256 k = 1; k < n; ++k) {
                if (outputs[k] > bestValue) (best, bestValue) = (k, outputs[k]);
            }
            return (best == rule.output, int256(best)); // best < 2^16
        }
        value = outputs[rule.output];
        eligible = rule.comparison == Comparison.AtLeast ? value >= rule.threshold : value <= rule.threshold;
    }

    function _checkNullifiers(Claim calldata claim) private view {
        uint256 prior = _recordClaims[claim.policyId][claim.recordNullifier];
        if (prior != 0) revert ClaimSettlementRecordAlreadyClaimed(claim.policyId, claim.recordNullifier, prior);
        prior = _commitmentClaims[claim.policyId][claim.inputCommitment];
        if (prior != 0) revert ClaimSettlementCommitmentAlreadyUsed(claim.policyId, claim.inputCommitment, prior);
    }

    /// @dev After the policy's `expiry`: the claim may land within `CLAIM_GRACE_PERIOD` if attested while it was live.
    function _checkGrace(Claim calldata claim, uint256 policyId, uint64 expiry) private view {
        if (block.timestamp > expiry + CLAIM_GRACE_PERIOD) revert ClaimSettlementPolicyExpired(policyId, expiry);
        if (claim.attestedAt > expiry) revert ClaimSettlementAttestedAfterExpiry(policyId, expiry, claim.attestedAt);
    }

    /// @dev Verifies the proof through the registry (which reverts with its own named errors) and binds it to the
    /// attested input commitment. Returns the decoded signed outputs.
    function _verifyProof(Claim calldata claim, Product memory product) private returns (int256[] memory outputs) {
        uint256 provenCommitment;
        (provenCommitment, outputs) = _registry.verify(product.modelId, product.version, claim.proof, claim.instances);
        if (provenCommitment != claim.inputCommitment) {
            revert ClaimSettlementCommitmentMismatch(claim.inputCommitment, provenCommitment);
        }
    }

    /// @dev `ModelRegistry.verifyBatch` of the claims' proofs and instances. The call's ABI encoding is written once,
    /// straight from calldata (the claims' proofs are never copied into memory arrays first: with ~2.3 KB per proof
    /// the second copy and its quadratic memory cost were a sizeable part of the per-claim overhead). The registry's
    /// revert data (its named errors) is passed on unchanged.
    function _verifyBatch(Claim[] calldata claims, bytes32 modelId, uint32 version)
        private
        view
        returns (uint256[] memory commitments, int256[][] memory outputs)
    {
        bytes memory data = _verifyBatchCalldata(claims, modelId, version);
        // The registry is immutable and trusted (set at deployment); a static call cannot change state. In assembly:
        // Solidity's `staticcall(data)` would first copy the ~2.5 KB-per-claim payload once more.
        address registry_ = address(_registry);
        bool ok;
        uint256 size;
        assembly ("memory-safe") {
            ok := staticcall(gas(), registry_, add(data, 0x20), mload(data), 0, 0)
            size := returndatasize()
            if iszero(ok) {
                let m := mload(0x40)
                returndatacopy(m, 0, size)
                revert(m, size)
            }
        }
        bytes memory ret = new bytes(size);
        assembly ("memory-safe") {
            returndatacopy(add(ret, 0x20), 0, size)
        }
        (commitments, outputs) = abi.decode(ret, (uint256[], int256[][]));
    }

    /// @dev `abi.encodeCall(IModelRegistryBatch.verifyBatch, (modelId, version, proofs, instances))` where `proofs[i]`
    /// and `instances[i]` are claim `i`'s, encoded directly from calldata: head (selector, modelId, version, two
    /// offsets), then `bytes[]` (length, offsets, each length + data padded to 32 bytes), then `uint256[][]`.
    function _verifyBatchCalldata(Claim[] calldata claims, bytes32 modelId, uint32 version)
        private
        pure
        returns (bytes memory data)
    {
        bytes4 selector = IModelRegistryBatch.verifyBatch.selector;
        uint256 args;
        assembly ("memory-safe") {
            // Written in place at the free memory pointer, which moves past it at the end (not zeroed first: every
            // byte is written, each proof's padding explicitly).
            data := mload(0x40)
            mstore(add(data, 0x20), selector)
            args := add(data, 0x24)
            mstore(args, modelId)
            mstore(add(args, 0x20), version)
            mstore(add(args, 0x40), 0x80)
        }
        uint256 instancesAt = _writeProofs(claims, args + 0x80) - args;
        uint256 end = _writeInstances(claims, args + instancesAt);
        assembly ("memory-safe") {
            mstore(add(args, 0x60), instancesAt)
            mstore(data, sub(end, add(data, 0x20)))
            mstore(0x40, and(add(end, 31), not(31)))
        }
    }

    /// @dev Writes the claims' proofs as an ABI `bytes[]` at memory `at`; returns where it ends.
    function _writeProofs(Claim[] calldata claims, uint256 at) private pure returns (uint256 tail) {
        uint256 n = claims.length;
        uint256 offsets = at + 0x20; // each element's offset is relative to here
        tail = offsets + n * 0x20;
        assembly ("memory-safe") {
            mstore(at, n)
        }
        for (uint256 i; i < n; ++i) {
            bytes calldata proof = claims[i].proof;
            assembly ("memory-safe") {
                let padded := and(add(proof.length, 31), not(31))
                mstore(add(offsets, mul(i, 0x20)), sub(tail, offsets))
                mstore(add(tail, padded), 0) // the last data word's padding (the length word itself if empty)
                mstore(tail, proof.length)
                calldatacopy(add(tail, 0x20), proof.offset, proof.length)
                tail := add(tail, add(0x20, padded))
            }
        }
    }

    /// @dev Writes the claims' instance vectors as an ABI `uint256[][]` at memory `at`; returns where it ends.
    function _writeInstances(Claim[] calldata claims, uint256 at) private pure returns (uint256 tail) {
        uint256 n = claims.length;
        uint256 offsets = at + 0x20;
        tail = offsets + n * 0x20;
        assembly ("memory-safe") {
            mstore(at, n)
        }
        for (uint256 i; i < n; ++i) {
            uint256[] calldata vector = claims[i].instances;
            assembly ("memory-safe") {
                mstore(add(offsets, mul(i, 0x20)), sub(tail, offsets))
                mstore(tail, vector.length)
                calldatacopy(add(tail, 0x20), vector.offset, mul(vector.length, 0x20))
                tail := add(tail, add(0x20, mul(vector.length, 0x20)))
            }
        }
    }

    /// @dev The effects of a paid claim: consumes the policy's and the pool's reservation (one write per packed slot)
    /// and emits `ClaimPaid`; the caller then pushes `pay` of `asset` to the holder (or credits it if the push fails).
    function _recordPayment(Policy memory policy, Product memory product, uint256 claimId, uint256 policyId)
        private
        returns (uint128 pay, address asset)
    {
        pay = product.payout < policy.reserved ? product.payout : policy.reserved;
        Policy storage stored = _policies[policyId];
        (stored.reserved, stored.paid) = (policy.reserved - pay, policy.paid + pay);
        Pool storage pool = _pools[product.poolId];
        (uint128 balance, uint128 reserved) = (pool.balance, pool.reserved);
        (pool.balance, pool.reserved) = (balance - pay, reserved - pay);
        asset = pool.asset;
        emit ClaimPaid(claimId, policyId, policy.holder, pay);
    }

    function _checkAttestation(Claim calldata claim, uint256 poolId) private view {
        uint64 attestedAt = claim.attestedAt;
        uint64 expiry = claim.attestationExpiry;
        if (block.timestamp > expiry) revert ClaimSettlementAttestationExpired(expiry);
        if (uint256(expiry) > uint256(attestedAt) + MAX_ATTESTATION_TTL) {
            revert ClaimSettlementAttestationTooLong(attestedAt, expiry);
        }
        address hospital = claim.hospital;
        HospitalTrust memory trust = _hospitalTrust[poolId][hospital];
        if (!trust.trusted && attestedAt >= trust.distrustedAt) {
            revert ClaimSettlementUntrustedHospital(poolId, hospital);
        }
        bytes32 digest = _attestationDigest(
            claim.policyId, poolId, hospital, claim.inputCommitment, claim.recordNullifier, attestedAt, expiry
        );
        if (!_isValidSignature(hospital, digest, claim.signature)) revert ClaimSettlementInvalidAttestation(hospital);
    }

    /// @dev Like OpenZeppelin's `SignatureChecker.isValidSignatureNow` (ECDSA, then ERC-1271), but the ERC-1271 call
    /// gets at most `ERC1271_GAS_LIMIT` gas and at most 32 bytes of its return data are copied.
    function _isValidSignature(address signer, bytes32 digest, bytes calldata signature) private view returns (bool) {
        if (signature.length == 65) {
            // r, s, v read from calldata (OZ's `tryRecover(bytes)` would copy the signature to memory first; it also
            // accepts only 65 bytes, so other lengths go to ERC-1271 exactly as before).
            bytes32 r;
            bytes32 s;
            uint8 v;
            assembly ("memory-safe") {
                r := calldataload(signature.offset)
                s := calldataload(add(signature.offset, 0x20))
                v := byte(0, calldataload(add(signature.offset, 0x40)))
            }
            // Safe to drop the third value: it only details a failure that `err` already reports.
            // slither-disable-next-line unused-return
            (address recovered, ECDSA.RecoverError err,) = ECDSA.tryRecover(digest, v, r, s);
            if (err == ECDSA.RecoverError.NoError && recovered == signer) return true;
        }
        if (signer.code.length == 0) return false;
        bytes memory data = abi.encodeCall(IERC1271.isValidSignature, (digest, signature));
        bool ok;
        uint256 size;
        bytes32 answer;
        assembly ("memory-safe") {
            mstore(0, 0)
            ok := staticcall(ERC1271_GAS_LIMIT, signer, add(data, 0x20), mload(data), 0, 0x20)
            size := returndatasize()
            answer := mload(0)
        }
        return ok && size >= 32 && answer == bytes32(IERC1271.isValidSignature.selector);
    }

    /// @dev The EIP-712 digest of an `Attestation` with these fields: `keccak256(abi.encode(ATTESTATION_TYPEHASH,
    /// fields...))`, hashed in scratch memory past the free memory pointer (nothing allocated per claim).
    function _attestationDigest(
        uint256 policyId,
        uint256 poolId,
        address hospital,
        uint256 inputCommitment,
        bytes32 recordNullifier,
        uint64 attestedAt,
        uint64 expiry
    ) private view returns (bytes32) {
        bytes32 typeHash = ATTESTATION_TYPEHASH;
        bytes32 structHash;
        assembly ("memory-safe") {
            let m := mload(0x40)
            mstore(m, typeHash)
            mstore(add(m, 0x20), policyId)
            mstore(add(m, 0x40), poolId)
            mstore(add(m, 0x60), hospital)
            mstore(add(m, 0x80), inputCommitment)
            mstore(add(m, 0xa0), recordNullifier)
            mstore(add(m, 0xc0), attestedAt)
            mstore(add(m, 0xe0), expiry)
            structHash := keccak256(m, 0x100)
        }
        return _hashTypedDataV4(structHash);
    }

    function _checkInsurer(uint256 poolId) private view {
        address insurer = _pools[poolId].insurer;
        if (insurer == address(0)) revert ClaimSettlementUnknownPool(poolId);
        if (insurer != msg.sender) revert ClaimSettlementNotInsurer(poolId, msg.sender);
    }

    // ------------------------------------------------------------------------------------------------ views

    /// @notice The model registry used to verify proofs.
    function registry() external view returns (IModelRegistry) {
        return _registry;
    }

    /// @notice A pool's record.
    function getPool(uint256 poolId) external view returns (Pool memory) {
        return _pools[poolId];
    }

    /// @notice A product's record.
    function getProduct(uint256 productId) external view returns (Product memory) {
        return _products[productId];
    }

    /// @notice A policy's record.
    function getPolicy(uint256 policyId) external view returns (Policy memory) {
        return _policies[policyId];
    }

    /// @notice Whether `hospital` is trusted by pool `poolId` now (its new attestations count).
    function isHospitalTrusted(uint256 poolId, address hospital) external view returns (bool) {
        return _hospitalTrust[poolId][hospital].trusted;
    }

    /// @notice Pool `poolId`'s trust in `hospital`: trusted now, or else since when it is distrusted (0: never
    /// trusted); attestations made before `distrustedAt` still count.
    function getHospitalTrust(uint256 poolId, address hospital) external view returns (HospitalTrust memory) {
        return _hospitalTrust[poolId][hospital];
    }

    /// @notice The claim on `policyId` that used `inputCommitment` (0 if none).
    function claimOfCommitment(uint256 policyId, uint256 inputCommitment) external view returns (uint256) {
        return _commitmentClaims[policyId][inputCommitment];
    }

    /// @notice The claim that used patient record `recordNullifier` on `policyId` (0 if none).
    function claimOfRecord(uint256 policyId, bytes32 recordNullifier) external view returns (uint256) {
        return _recordClaims[policyId][recordNullifier];
    }

    /// @notice The number of claims recorded so far (paid + denied); claim ids are 1..claimCount.
    function claimCount() external view returns (uint256) {
        return _counters.claims;
    }

    /// @notice The EIP-712 digest a hospital signs for `attestation`.
    function attestationDigest(Attestation calldata attestation) external view returns (bytes32) {
        return _attestationDigest(
            attestation.policyId,
            attestation.poolId,
            attestation.hospital,
            attestation.inputCommitment,
            attestation.recordNullifier,
            attestation.attestedAt,
            attestation.expiry
        );
    }

    /// @notice The EIP-712 domain separator (name "zkcare ClaimSettlement", version "1", this chain, this contract).
    function domainSeparator() external view returns (bytes32) {
        return _domainSeparatorV4();
    }
}
