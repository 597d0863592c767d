// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {IModelRegistry, IModelRegistryErrors, ModelStatus, ModelVersion} from "./interfaces/IModelRegistry.sol";
import {Payouts} from "./Payouts.sol";

/// @title ResearchBounty
/// @notice Escrowed bounties (ETH or ERC-20) for a model that reaches a minimum metric on a committed benchmark,
/// proven with an evaluation circuit while the weights stay private. The benchmark is part of the circuit (its rows are
/// constants of the registered model version, named by the registry's ONNX sha256 and verifying key), so a bounty names
/// its benchmark by `(modelId, version)`. Every instance of the evaluation layout is pinned: the input commitment is
/// the researcher's weights commitment (compared with the committed one), the metric is the first output
/// (`outputs[0]`), and outputs 1..6 must carry this submission's context (see below).
/// The first valid submission meeting the metric is paid; the sponsor (e.g. a DAO timelock) gets unpaid funds back
/// after the deadline.
///
/// Binding: a proof pays exactly one bounty and one researcher. The circuit passes six 24-bit context limbs through to
/// its outputs; `reveal` requires them to be the limbs of `submissionContext(bountyId, researcher)`, a 144-bit
/// digest of the chain id, this contract, the bounty and the researcher. A revealed proof is therefore worthless on any
/// other bounty, contract or chain, and for any other researcher.
///
/// Commit-reveal (a second line of defence behind the context): a researcher first calls `commit(h)` with
/// `h = keccak256(abi.encode(bountyId, researcher, weightsCommitment, salt))`, then, at least `minRevealDelay` blocks
/// later, `reveal(...)` with the proof. The payout always goes to the `researcher` inside the commitment, so a copied
/// reveal transaction (from the mempool, from any sender) either pays the rightful researcher or reverts; a copier
/// who substitutes its own address has no matching commitment, and a fresh commitment cannot be revealed in the same
/// block. Even a copier who commits early cannot win with the rightful researcher's proof: its context names the
/// rightful researcher.
///
/// `contextScale` is the sponsor's statement of the circuit's context scale (zkcare's evaluation circuit: 10, see
/// `prover.models.bounty_eval.context_scale`); a wrong one makes the bounty unwinnable until the sponsor reclaims it,
/// so it is in `BountyCreated` for provers and indexers to check.
///
/// Deadline semantics: reveals are accepted while `block.timestamp < deadline`; from `deadline` on (inclusive) no
/// reveal is accepted and `reclaim` returns the escrow to the sponsor (anyone may trigger it).
contract ResearchBounty is Payouts, IModelRegistryErrors {
    /// @notice Number of context limbs an evaluation circuit outputs after its metric (`outputs[1..CONTEXT_LIMBS]`).
    uint256 public constant CONTEXT_LIMBS = 6;
    /// @notice Bits per context limb (each limb is exact in the circuit's f32 inputs).
    uint256 public constant CONTEXT_LIMB_BITS = 24;
    /// @notice Largest accepted fixed-point scale of the context outputs.
    uint8 public constant MAX_CONTEXT_SCALE = 32;

    /// @notice Lifecycle of a bounty.
    enum BountyStatus {
        None,
        Open,
        Awarded,
        Reclaimed
    }

    /// @notice Parameters of a new bounty.
    struct BountyParams {
        address asset; // address(0) = ETH
        uint256 amount;
        bytes32 modelId; // evaluation circuit's model id in the registry
        uint32 version;
        uint8 contextScale; // fixed-point scale (log2) of the context outputs
        int128 minMetric; // in the circuit's fixed-point units (registry outputScale)
        uint64 deadline;
    }

    /// @notice A bounty's record.
    struct Bounty {
        // slot 0
        address sponsor;
        uint40 deadline;
        BountyStatus status;
        uint8 contextScale;
        // slot 1
        address asset;
        uint32 version;
        // slot 2
        bytes32 modelId;
        // slot 3
        int128 minMetric;
        uint128 amount;
        // slot 4
        address winner;
    }

    IModelRegistry private immutable _registry;
    uint64 private immutable _minRevealDelay;
    uint256 private _bountyCount;
    mapping(uint256 bountyId => Bounty) private _bounties;
    mapping(bytes32 commitment => uint256 blockNumber) private _commitBlocks;

    /// @notice Emitted after a bounty was created and `amount` (what actually arrived) escrowed.
    event BountyCreated(
        uint256 indexed bountyId,
        address indexed sponsor,
        address indexed asset,
        uint256 amount,
        bytes32 modelId,
        uint32 version,
        uint8 contextScale,
        int128 minMetric,
        uint64 deadline
    );
    /// @notice Emitted after `committer` registered a submission commitment.
    event SubmissionCommitted(bytes32 indexed commitment, address indexed committer, uint256 blockNumber);
    /// @notice Emitted after a bounty was awarded to `researcher` (paid, or credited if the push failed).
    event BountyAwarded(
        uint256 indexed bountyId, address indexed researcher, uint256 weightsCommitment, int256 metric, uint256 amount
    );
    /// @notice Emitted after the escrow of an unawarded bounty went back to its sponsor.
    event BountyReclaimed(uint256 indexed bountyId, address indexed sponsor, uint256 amount);

    /// @dev The registry address is zero or the reveal delay is zero.
    error ResearchBountyInvalidConfig();
    /// @dev No bounty with this id.
    error ResearchBountyUnknown(uint256 bountyId);
    /// @dev The evaluation model version is not active.
    error ResearchBountyModelNotActive(bytes32 modelId, uint32 version);
    /// @dev The deadline is not in the future (or does not fit 40 bits).
    error ResearchBountyInvalidDeadline(uint64 deadline);
    /// @dev The bounty was already awarded to `winner`.
    error ResearchBountyAlreadyAwarded(uint256 bountyId, address winner);
    /// @dev The bounty's escrow was already reclaimed.
    error ResearchBountyAlreadyReclaimed(uint256 bountyId);
    /// @dev The deadline has passed: no more reveals.
    error ResearchBountyDeadlinePassed(uint256 bountyId, uint64 deadline);
    /// @dev The deadline has not been reached: no reclaim yet.
    error ResearchBountyDeadlineNotReached(uint256 bountyId, uint64 deadline);
    /// @dev This commitment was already registered.
    error ResearchBountyAlreadyCommitted(bytes32 commitment);
    /// @dev No commitment matches (bountyId, researcher, weightsCommitment, salt).
    error ResearchBountyUnknownCommitment(bytes32 commitment);
    /// @dev The commitment can be revealed from block `revealableAt` on.
    error ResearchBountyRevealTooEarly(bytes32 commitment, uint256 revealableAt);
    /// @dev The proof's weights commitment is not the committed one.
    error ResearchBountyWeightsMismatch(uint256 committed, uint256 proven);
    /// @dev The evaluation model does not output the metric and `CONTEXT_LIMBS` context limbs.
    error ResearchBountyNoContextOutputs(uint16 outputCount);
    /// @dev The context scale is above `MAX_CONTEXT_SCALE`.
    error ResearchBountyInvalidContextScale(uint8 contextScale);
    /// @dev The proof's context limb `limb` is not that of `submissionContext(bountyId, researcher)`: the proof was
    /// made for another bounty, contract, chain or researcher.
    error ResearchBountyContextMismatch(uint256 bountyId, address researcher, uint256 limb);
    /// @dev The proven metric is below the bounty's minimum.
    error ResearchBountyMetricBelowMinimum(uint256 bountyId, int256 metric, int256 minMetric);

    /// @param registry_ The model registry that verifies proofs.
    /// @param minRevealDelay_ Minimum number of blocks between a commit and its reveal (>= 1).
    constructor(IModelRegistry registry_, uint64 minRevealDelay_) {
        if (address(registry_) == address(0) || minRevealDelay_ == 0) revert ResearchBountyInvalidConfig();
        _registry = registry_;
        _minRevealDelay = minRevealDelay_;
    }

    // ------------------------------------------------------------------------------------------------ sponsor

    /// @notice Creates a bounty and escrows `params.amount` (ETH: send it as `msg.value`; ERC-20: approve first). The
    /// caller is the sponsor. For ERC-20 the escrow is what actually arrived.
    function createBounty(BountyParams calldata params) external payable nonReentrant returns (uint256 bountyId) {
        ModelVersion memory model = _registry.getModelVersion(params.modelId, params.version);
        if (model.status != ModelStatus.Active || !_registry.isActive(params.modelId, params.version)) {
            revert ResearchBountyModelNotActive(params.modelId, params.version);
        }
        if (model.outputCount != 1 + CONTEXT_LIMBS) revert ResearchBountyNoContextOutputs(model.outputCount);
        if (params.contextScale > MAX_CONTEXT_SCALE) revert ResearchBountyInvalidContextScale(params.contextScale);
        if (params.deadline <= block.timestamp || params.deadline > type(uint40).max) {
            revert ResearchBountyInvalidDeadline(params.deadline);
        }

        uint128 received = _pullIn(params.asset, params.amount, msg.value);
        bountyId = ++_bountyCount;
        _bounties[bountyId] = Bounty({
            sponsor: msg.sender,
            deadline: uint40(params.deadline),
            status: BountyStatus.Open,
            contextScale: params.contextScale,
            asset: params.asset,
            version: params.version,
            modelId: params.modelId,
            minMetric: params.minMetric,
            amount: received,
            winner: address(0)
        });
        emit BountyCreated(
            bountyId,
            msg.sender,
            params.asset,
            received,
            params.modelId,
            params.version,
            params.contextScale,
            params.minMetric,
            params.deadline
        );
    }

    /// @notice After the deadline, returns an unawarded bounty's escrow to its sponsor (anyone may call; the funds only
    /// go to the sponsor, pushed or credited).
    function reclaim(uint256 bountyId) external nonReentrant {
        Bounty storage bounty = _bounties[bountyId];
        _requireOpen(bounty, bountyId);
        uint64 deadline = bounty.deadline;
        if (block.timestamp < deadline) revert ResearchBountyDeadlineNotReached(bountyId, deadline);
        bounty.status = BountyStatus.Reclaimed;
        address sponsor = bounty.sponsor;
        uint256 amount = bounty.amount;
        emit BountyReclaimed(bountyId, sponsor, amount);
        _pushOrCredit(bounty.asset, sponsor, amount);
    }

    // ------------------------------------------------------------------------------------------------ researcher

    /// @notice Registers a submission commitment `keccak256(abi.encode(bountyId, researcher, weightsCommitment, salt))`
    /// (see `submissionCommitment`). It can be revealed `minRevealDelay` blocks later.
    function commit(bytes32 commitment) external {
        if (_commitBlocks[commitment] != 0) revert ResearchBountyAlreadyCommitted(commitment);
        _commitBlocks[commitment] = block.number;
        emit SubmissionCommitted(commitment, msg.sender, block.number);
    }

    /// @notice Reveals a committed submission with its proof; pays `researcher` if the proof is valid for the bounty's
    /// evaluation model (its benchmark), the committed weights and this bounty and researcher (the context), and the
    /// metric reaches the minimum. Anyone may
    /// send it (e.g. a relayer); the payout always goes to `researcher`. Reverts with a named error otherwise.
    // Safe: the award needs the verified metric, so its effects follow the call to the registry, an immutable,
    // trusted contract set at deployment; and `reveal` is nonReentrant.
    // slither-disable-next-line reentrancy-no-eth
    function reveal(
        uint256 bountyId,
        address researcher,
        uint256 weightsCommitment,
        bytes32 salt,
        bytes calldata proof,
        uint256[] calldata instances
    ) external nonReentrant {
        if (researcher == address(0)) revert PayoutsZeroRecipient();
        Bounty storage bounty = _bounties[bountyId];
        _requireOpen(bounty, bountyId);
        uint64 deadline = bounty.deadline;
        if (block.timestamp >= deadline) revert ResearchBountyDeadlinePassed(bountyId, deadline);

        bytes32 commitment = submissionCommitment(bountyId, researcher, weightsCommitment, salt);
        uint256 committedAt = _commitBlocks[commitment];
        if (committedAt == 0) revert ResearchBountyUnknownCommitment(commitment);
        if (block.number < committedAt + _minRevealDelay) {
            revert ResearchBountyRevealTooEarly(commitment, committedAt + _minRevealDelay);
        }

        int256 metric = _verifySubmission(bounty, bountyId, researcher, weightsCommitment, proof, instances);
        if (metric < bounty.minMetric) revert ResearchBountyMetricBelowMinimum(bountyId, metric, bounty.minMetric);

        // Effects.
        bounty.status = BountyStatus.Awarded;
        bounty.winner = researcher;
        delete _commitBlocks[commitment];
        uint256 amount = bounty.amount;
        emit BountyAwarded(bountyId, researcher, weightsCommitment, metric, amount);

        // Interaction.
        _pushOrCredit(bounty.asset, researcher, amount);
    }

    function _verifySubmission(
        Bounty storage bounty,
        uint256 bountyId,
        address researcher,
        uint256 weightsCommitment,
        bytes calldata proof,
        uint256[] calldata instances
    ) private returns (int256 metric) {
        (uint256 provenWeights, int256[] memory outputs) =
            _registry.verify(bounty.modelId, bounty.version, proof, instances);
        if (provenWeights != weightsCommitment) revert ResearchBountyWeightsMismatch(weightsCommitment, provenWeights);
        metric = outputs[0];
        // createBounty checked outputCount == 1 + CONTEXT_LIMBS for this version.
        uint256 context = submissionContext(bountyId, researcher);
        uint8 scale = bounty.contextScale;
        for (uint256 i = 0; i < CONTEXT_LIMBS; ++i) {
            int256 expected = int256(((context >> (CONTEXT_LIMB_BITS * i)) & 0xFFFFFF) << scale);
            if (outputs[1 + i] != expected) revert ResearchBountyContextMismatch(bountyId, researcher, i);
        }
    }

    function _requireOpen(Bounty storage bounty, uint256 bountyId) private view {
        BountyStatus status = bounty.status;
        if (status == BountyStatus.Open) return;
        if (status == BountyStatus.Awarded) revert ResearchBountyAlreadyAwarded(bountyId, bounty.winner);
        if (status == BountyStatus.Reclaimed) revert ResearchBountyAlreadyReclaimed(bountyId);
        revert ResearchBountyUnknown(bountyId);
    }

    // ------------------------------------------------------------------------------------------------ views

    /// @notice The submission commitment a researcher registers with `commit`.
    function submissionCommitment(uint256 bountyId, address researcher, uint256 weightsCommitment, bytes32 salt)
        public
        pure
        returns (bytes32)
    {
        return keccak256(abi.encode(bountyId, researcher, weightsCommitment, salt));
    }

    /// @notice The 144-bit context a submission's proof must carry (as `CONTEXT_LIMBS` 24-bit limbs, least significant
    /// first): binds the proof to this chain, this contract, `bountyId` and `researcher`.
    function submissionContext(uint256 bountyId, address researcher) public view returns (uint256) {
        return uint256(keccak256(abi.encode(block.chainid, address(this), bountyId, researcher)))
            >> (256 - CONTEXT_LIMBS * CONTEXT_LIMB_BITS);
    }

    /// @notice The block in which `commitment` was registered (0 if never, or consumed by a winning reveal).
    function commitBlock(bytes32 commitment) external view returns (uint256) {
        return _commitBlocks[commitment];
    }

    /// @notice A bounty's record.
    function getBounty(uint256 bountyId) external view returns (Bounty memory) {
        return _bounties[bountyId];
    }

    /// @notice The number of bounties created; ids are 1..bountyCount.
    function bountyCount() external view returns (uint256) {
        return _bountyCount;
    }

    /// @notice The model registry used to verify proofs.
    function registry() external view returns (IModelRegistry) {
        return _registry;
    }

    /// @notice Minimum number of blocks between a commit and its reveal.
    function minRevealDelay() external view returns (uint64) {
        return _minRevealDelay;
    }
}
