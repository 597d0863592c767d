// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

/// @notice Lifecycle of a registered model version. `Revoked` is a tombstone: it can never become `Active` again.
enum ModelStatus {
    Unregistered,
    Active,
    Revoked
}

/// @dev `InstanceLayout.inputIndex` value meaning "the input commitment is in the proof, not an instance".
/// For a model built with EZKL `input_visibility = "polycommit"` the (salted) input column is committed with an
/// unblinded KZG commitment that is the proof's first G1 point: `proof[0:64]` = x then y, each 32 bytes big-endian.
/// The registry then returns `uint256(keccak256(proof[0:64]))` as the input commitment, and refuses a proof shorter
/// than 64 bytes or with a coordinate `>= q` (the BN254 base field modulus) with
/// `ModelRegistryInputCommitmentNotCanonical`, so that one point has one encoding and so one commitment.
uint16 constant PROOF_COMMITMENT = type(uint16).max;

/// @notice Where a model version's values sit in its public instance vector, and the outputs' fixed-point scale.
/// @dev The model's outputs are `instances[outputIndex .. outputIndex + outputCount)`, all at the same scale; the
/// input commitment is one instance outside that range, or, when `inputIndex == PROOF_COMMITMENT`, the hash of the
/// proof's first G1 point (then every instance may be an output).
/// Diagnostic model: `instances = [inputCommitment, logit]` -> {instanceCount: 2, inputIndex: 0, outputIndex: 1,
/// outputCount: 1}. A 10-class CNN: `[inputCommitment, logit0, ..., logit9]` -> {11, 0, 1, 10}. Evaluation circuit:
/// `[benchmarkCommitment, labelsCommitment, weightsCommitment, metric]` -> {4, 0, 3, 1}; the bounty stores the
/// weights- and labels-commitment indices itself. A `polycommit` diagnostic model: `instances = [logit]` ->
/// {1, PROOF_COMMITMENT, 0, 1}. `outputScale` is the number of fractional bits:
/// value = signed(x) / 2^outputScale.
struct InstanceLayout {
    uint16 instanceCount;
    uint16 inputIndex;
    uint16 outputIndex;
    uint16 outputCount;
    uint8 outputScale;
}

/// @notice A registered model version (4 storage slots; `verify` reads only the first two). Slot 0 packs 30 bytes.
struct ModelVersion {
    // slot 0
    address verifier;
    ModelStatus status;
    uint16 instanceCount;
    uint16 inputIndex;
    uint16 outputIndex;
    uint16 outputCount;
    uint8 outputScale;
    // slot 1
    bytes32 verifierCodeHash;
    // slots 2, 3 (provenance only)
    bytes32 onnxSha256;
    bytes32 vkSha256;
}

/// @title IModelRegistryErrors
/// @notice The errors `IModelRegistry.verify` reverts with. Contracts that call `verify` inherit this interface so
/// that the errors they bubble up are part of their own ABI (and decodable by tools that only know the caller).
interface IModelRegistryErrors {
    /// @dev The registry was permanently stopped by a guardian.
    error ModelRegistryStopped();
    /// @dev No version `version` of model `modelId` was ever registered.
    error ModelRegistryUnknownVersion(bytes32 modelId, uint32 version);
    /// @dev The version was revoked (tombstoned); it can neither verify nor be registered again.
    error ModelRegistryVersionRevoked(bytes32 modelId, uint32 version);
    /// @dev The number of public instances differs from the registered layout.
    error ModelRegistryInstanceCountMismatch(uint256 expected, uint256 actual);
    /// @dev Public instance `index` is not a canonical BN254 scalar field element (`value >= r`).
    error ModelRegistryInstanceNotInField(uint256 index, uint256 value);
    /// @dev The verifier's runtime code hash is no longer the one registered.
    error ModelRegistryVerifierCodeChanged(address verifier, bytes32 registered, bytes32 current);
    /// @dev The verifier rejected the proof (it reverted or returned false).
    error ModelRegistryProofRejected(bytes32 modelId, uint32 version);
    /// @dev For a `PROOF_COMMITMENT` version: proof `proofIndex` (0 for `verify`, its batch index for `verifyBatch`)
    /// is shorter than 64 bytes or its first G1 point has a coordinate `>= q` (not canonically encoded).
    error ModelRegistryInputCommitmentNotCanonical(uint256 proofIndex);
}

/// @title IModelRegistry
/// @notice Registry of model versions and their generated Halo2 verifiers; single entry point for proof verification.
interface IModelRegistry is IModelRegistryErrors {
    /// @notice Verifies `proof` for a model version; reverts with a named error on any failure, never returns false.
    /// @return inputCommitment The instance at the version's `inputIndex` (e.g. the Poseidon commitment to the input),
    /// or `uint256(keccak256(proof[0:64]))` when `inputIndex == PROOF_COMMITMENT` (the input's KZG commitment).
    /// @return outputs The `outputCount` instances from `outputIndex` on, in order, each decoded from the field to a
    /// signed fixed-point integer (`outputs[k]` is output `k` of the model).
    function verify(bytes32 modelId, uint32 version, bytes calldata proof, uint256[] calldata instances)
        external
        returns (uint256 inputCommitment, int256[] memory outputs);

    /// @notice Returns the full record of a model version (all zero when unregistered).
    function getModelVersion(bytes32 modelId, uint32 version) external view returns (ModelVersion memory);

    /// @notice True when the version is registered, not revoked and the registry is not stopped.
    function isActive(bytes32 modelId, uint32 version) external view returns (bool);
}

/// @notice The batch verifier registered next to a model version's single verifier (`prover.zk.batch`).
struct BatchVerifierRecord {
    address verifier;
    bytes32 codeHash;
}

/// @title IModelRegistryBatchErrors
/// @notice The errors of batch registration and `IModelRegistryBatch.verifyBatch`. Contracts that call `verifyBatch`
/// inherit this interface so that the errors they bubble up are part of their own ABI.
interface IModelRegistryBatchErrors {
    /// @dev The version has no batch verifier.
    error ModelRegistryNoBatchVerifier(bytes32 modelId, uint32 version);
    /// @dev The version already has a batch verifier (it is pinned: a different one needs a new version).
    error ModelRegistryBatchVerifierAlreadyRegistered(bytes32 modelId, uint32 version, address batchVerifier);
    /// @dev The batch is empty, or `proofs` and `instances` differ in length.
    error ModelRegistryInvalidBatch(uint256 proofs, uint256 instances);
    /// @dev The batch verifier rejected the batch. `index` is the proof that failed on its own, or
    /// `type(uint256).max` when only the combined pairing failed (then any proof may be the bad one).
    error ModelRegistryBatchRejected(bytes32 modelId, uint32 version, uint256 index);
}

/// @title IModelRegistryBatch
/// @notice Batch verification: many proofs of one model version checked with one pairing by the version's batch
/// verifier. Kept apart from `IModelRegistryErrors` so that contracts which only call `verify` keep their ABI.
interface IModelRegistryBatch is IModelRegistryBatchErrors {
    /// @notice Verifies `proofs[i]` with `instances[i]` for every i through the version's batch verifier; all or none.
    /// @return inputCommitments Per proof, its input commitment (as `IModelRegistry.verify` returns it).
    /// @return outputs Per proof, its decoded outputs (as `IModelRegistry.verify` returns them).
    function verifyBatch(bytes32 modelId, uint32 version, bytes[] calldata proofs, uint256[][] calldata instances)
        external
        view
        returns (uint256[] memory inputCommitments, int256[][] memory outputs);

    /// @notice The batch verifier of a version and its pinned code hash (zero when none).
    function getBatchVerifier(bytes32 modelId, uint32 version) external view returns (BatchVerifierRecord memory);
}
