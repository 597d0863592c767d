// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";

import {Bn254Field} from "./Bn254Field.sol";
import {IHalo2BatchVerifier} from "./interfaces/IHalo2BatchVerifier.sol";
import {IHalo2Verifier} from "./interfaces/IHalo2Verifier.sol";
import {
    BatchVerifierRecord,
    IModelRegistry,
    IModelRegistryBatch,
    InstanceLayout,
    ModelStatus,
    ModelVersion,
    PROOF_COMMITMENT
} from "./interfaces/IModelRegistry.sol";

/// @title ModelRegistry
/// @notice Maps model id -> version -> generated Halo2 verifier, with provenance (ONNX and verifying-key sha256, the
/// verifier's code hash) and the public-instance layout. It is the single place where proofs are verified.
/// @dev Router pattern (cf. risc0's RiscZeroVerifierRouter): a version, once revoked, is a tombstone and can never be
/// registered or activated again. Roles:
/// - `DEFAULT_ADMIN_ROLE` grants and revokes roles; in production hold it in a `TimelockController`.
/// - `REGISTRAR_ROLE` registers new model versions.
/// - `GUARDIAN_ROLE` revokes versions immediately and can stop the whole registry permanently.
/// A version may also carry a batch verifier (generated from its single verifier by `prover.zk.batch`), registered by
/// `REGISTRAR_ROLE` once, code hash pinned; revoking the version revokes it too.
contract ModelRegistry is AccessControl, IModelRegistry, IModelRegistryBatch {
    /// @notice Role allowed to register model versions.
    bytes32 public constant REGISTRAR_ROLE = keccak256("REGISTRAR_ROLE");
    /// @notice Role allowed to revoke model versions and to stop the registry.
    bytes32 public constant GUARDIAN_ROLE = keccak256("GUARDIAN_ROLE");
    /// @notice Largest accepted output scale (fractional bits).
    uint8 public constant MAX_OUTPUT_SCALE = 128;

    mapping(bytes32 modelId => mapping(uint32 version => ModelVersion)) private _versions;
    mapping(bytes32 modelId => mapping(uint32 version => BatchVerifierRecord)) private _batchVerifiers;
    bool private _stopped;

    /// @notice Emitted after a model version was registered.
    event ModelRegistered(
        bytes32 indexed modelId,
        uint32 indexed version,
        address indexed verifier,
        bytes32 verifierCodeHash,
        bytes32 onnxSha256,
        bytes32 vkSha256,
        InstanceLayout layout
    );
    /// @notice Emitted after a batch verifier was registered for an active model version.
    event BatchVerifierRegistered(
        bytes32 indexed modelId, uint32 indexed version, address indexed batchVerifier, bytes32 codeHash
    );
    /// @notice Emitted after a model version was revoked (tombstoned) by `guardian`.
    event ModelRevoked(bytes32 indexed modelId, uint32 indexed version, address indexed guardian);
    /// @notice Emitted after the registry was permanently stopped by `guardian`.
    event RegistryStopped(address indexed guardian);

    /// @dev `admin` is the zero address.
    error ModelRegistryZeroAdmin();
    /// @dev The version is already registered and active.
    error ModelRegistryVersionAlreadyRegistered(bytes32 modelId, uint32 version);
    /// @dev The verifier address has no code.
    error ModelRegistryVerifierHasNoCode(address verifier);
    /// @dev At registration, the verifier's code hash differs from the one the registrar audited.
    error ModelRegistryVerifierCodeHashMismatch(address verifier, bytes32 expected, bytes32 actual);
    /// @dev The layout is empty, has no output, the input index (unless `PROOF_COMMITMENT`) or the output range does
    /// not fit the instances, the input index lies inside the output range, or the scale is too large.
    error ModelRegistryInvalidLayout(
        uint16 instanceCount, uint16 inputIndex, uint16 outputIndex, uint16 outputCount, uint8 outputScale
    );

    /// @param admin Receives `DEFAULT_ADMIN_ROLE` (e.g. a TimelockController). Other roles are granted by the admin.
    constructor(address admin) {
        if (admin == address(0)) revert ModelRegistryZeroAdmin();
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
    }

    // ------------------------------------------------------------------------------------------------ registration

    /// @notice Registers version `version` of model `modelId`.
    /// @param verifier The generated Halo2 verifier (must have code).
    /// @param verifierCodeHash The `extcodehash` the registrar audited; must equal the verifier's current code hash.
    /// @param onnxSha256 sha256 of the ONNX model file.
    /// @param vkSha256 sha256 of the circuit's verifying key.
    /// @param layout Instance count, input-commitment index, output range (first index and count), output scale
    /// (fractional bits). Requires `instanceCount > 0`, `outputCount >= 1`, `outputIndex + outputCount <=
    /// instanceCount`, `outputScale <= MAX_OUTPUT_SCALE`, and either `inputIndex == PROOF_COMMITMENT` (the input
    /// commitment is the proof's first G1 point; no instance holds it, so outputs may start at 0 and fill every
    /// instance) or `inputIndex < instanceCount` outside the output range.
    function registerModel(
        bytes32 modelId,
        uint32 version,
        address verifier,
        bytes32 verifierCodeHash,
        bytes32 onnxSha256,
        bytes32 vkSha256,
        InstanceLayout calldata layout
    ) external onlyRole(REGISTRAR_ROLE) {
        if (_stopped) revert ModelRegistryStopped();
        ModelStatus status = _versions[modelId][version].status;
        if (status == ModelStatus.Revoked) revert ModelRegistryVersionRevoked(modelId, version);
        if (status == ModelStatus.Active) revert ModelRegistryVersionAlreadyRegistered(modelId, version);
        if (verifier.code.length == 0) revert ModelRegistryVerifierHasNoCode(verifier);
        bytes32 actualCodeHash = verifier.codehash;
        if (actualCodeHash != verifierCodeHash) {
            revert ModelRegistryVerifierCodeHashMismatch(verifier, verifierCodeHash, actualCodeHash);
        }
        _checkLayout(layout);

        _versions[modelId][version] = ModelVersion({
            verifier: verifier,
            status: ModelStatus.Active,
            instanceCount: layout.instanceCount,
            inputIndex: layout.inputIndex,
            outputIndex: layout.outputIndex,
            outputCount: layout.outputCount,
            outputScale: layout.outputScale,
            verifierCodeHash: verifierCodeHash,
            onnxSha256: onnxSha256,
            vkSha256: vkSha256
        });
        emit ModelRegistered(modelId, version, verifier, verifierCodeHash, onnxSha256, vkSha256, layout);
    }

    function _checkLayout(InstanceLayout calldata layout) private pure {
        uint256 count = layout.instanceCount;
        uint256 input = layout.inputIndex;
        uint256 first = layout.outputIndex;
        uint256 end = first + layout.outputCount; // uint256: no uint16 overflow
        // PROOF_COMMITMENT (65535) is >= every count, so it is the only out-of-range input index let through.
        bool inputFits = input == PROOF_COMMITMENT || (input < count && (input < first || input >= end));
        if (
            count == 0 || !inputFits || layout.outputCount == 0 || end > count
                || layout.outputScale > MAX_OUTPUT_SCALE
        ) {
            revert ModelRegistryInvalidLayout(
                layout.instanceCount, layout.inputIndex, layout.outputIndex, layout.outputCount, layout.outputScale
            );
        }
    }

    /// @notice Registers the batch verifier of an active version, next to its single verifier. Only `REGISTRAR_ROLE`.
    /// @param batchVerifier The batch verifier generated from the version's single verifier (must have code).
    /// @param codeHash The `extcodehash` the registrar audited; must equal the batch verifier's current code hash and
    /// stays pinned: a batch verifier is registered once per version and can only go away with the version.
    function registerBatchVerifier(bytes32 modelId, uint32 version, address batchVerifier, bytes32 codeHash)
        external
        onlyRole(REGISTRAR_ROLE)
    {
        _checkActive(modelId, version);
        address existing = _batchVerifiers[modelId][version].verifier;
        if (existing != address(0)) revert ModelRegistryBatchVerifierAlreadyRegistered(modelId, version, existing);
        if (batchVerifier.code.length == 0) revert ModelRegistryVerifierHasNoCode(batchVerifier);
        bytes32 actualCodeHash = batchVerifier.codehash;
        if (actualCodeHash != codeHash) {
            revert ModelRegistryVerifierCodeHashMismatch(batchVerifier, codeHash, actualCodeHash);
        }

        _batchVerifiers[modelId][version] = BatchVerifierRecord({verifier: batchVerifier, codeHash: codeHash});
        emit BatchVerifierRegistered(modelId, version, batchVerifier, codeHash);
    }

    function _checkActive(bytes32 modelId, uint32 version) private view {
        if (_stopped) revert ModelRegistryStopped();
        ModelStatus status = _versions[modelId][version].status;
        if (status == ModelStatus.Revoked) revert ModelRegistryVersionRevoked(modelId, version);
        if (status != ModelStatus.Active) revert ModelRegistryUnknownVersion(modelId, version);
    }

    /// @notice Revokes (tombstones) a version at once; it can never verify or be registered again.
    function revokeModel(bytes32 modelId, uint32 version) external onlyRole(GUARDIAN_ROLE) {
        ModelVersion storage entry = _versions[modelId][version];
        ModelStatus status = entry.status;
        if (status == ModelStatus.Unregistered) revert ModelRegistryUnknownVersion(modelId, version);
        if (status == ModelStatus.Revoked) revert ModelRegistryVersionRevoked(modelId, version);
        entry.status = ModelStatus.Revoked;
        emit ModelRevoked(modelId, version, _msgSender());
    }

    /// @notice Permanently stops the registry: every later `verify` and `registerModel` reverts. Irreversible.
    function stop() external onlyRole(GUARDIAN_ROLE) {
        if (_stopped) revert ModelRegistryStopped();
        _stopped = true;
        emit RegistryStopped(_msgSender());
    }

    // ------------------------------------------------------------------------------------------------ verification

    /// @inheritdoc IModelRegistry
    /// @dev Checks, in order: registry not stopped; version registered and not revoked; instance count; every instance
    /// `< r`; for a `PROOF_COMMITMENT` version, the proof's first G1 point canonical
    /// (`ModelRegistryInputCommitmentNotCanonical(0)`); verifier code hash unchanged; then calls the verifier (revert
    /// or `false` -> `ModelRegistryProofRejected`).
    function verify(bytes32 modelId, uint32 version, bytes calldata proof, uint256[] calldata instances)
        external
        returns (uint256 inputCommitment, int256[] memory outputs)
    {
        if (_stopped) revert ModelRegistryStopped();
        ModelVersion storage entry = _versions[modelId][version];
        // Slot 0 holds verifier, status and layout (one cold SLOAD; the indices are re-read warm after the call).
        address verifier = entry.verifier;
        ModelStatus status = entry.status;
        uint256 instanceCount = entry.instanceCount;
        if (status != ModelStatus.Active) {
            if (status == ModelStatus.Revoked) revert ModelRegistryVersionRevoked(modelId, version);
            revert ModelRegistryUnknownVersion(modelId, version);
        }
        if (instances.length != instanceCount) {
            revert ModelRegistryInstanceCountMismatch(instanceCount, instances.length);
        }
        for (uint256 i; i < instanceCount; ++i) {
            uint256 value = instances[i];
            if (value >= Bn254Field.MODULUS) revert ModelRegistryInstanceNotInField(i, value);
        }
        {
            // Same slot as above (warm). One branch on the instance path; `input < instanceCount` since registration.
            uint256 input = entry.inputIndex;
            inputCommitment = input == PROOF_COMMITMENT ? _proofCommitment(proof, 0) : instances[input];
        }
        bytes32 registeredCodeHash = entry.verifierCodeHash;
        bytes32 currentCodeHash = verifier.codehash;
        if (currentCodeHash != registeredCodeHash) {
            revert ModelRegistryVerifierCodeChanged(verifier, registeredCodeHash, currentCodeHash);
        }

        // A low-level call, so that malformed return data (not one ABI-encoded `true`) is a named rejection too;
        // `try ... returns (bool)` would revert with empty data while decoding it.
        (bool ok, bytes memory ret) = verifier.call(abi.encodeCall(IHalo2Verifier.verifyProof, (proof, instances)));
        if (!ok || ret.length != 32 || abi.decode(ret, (uint256)) != 1) {
            revert ModelRegistryProofRejected(modelId, version);
        }

        uint256 first = entry.outputIndex;
        uint256 outputCount = entry.outputCount;
        outputs = new int256[](outputCount);
        for (uint256 k; k < outputCount; ++k) {
            outputs[k] = Bn254Field.toSigned(instances[first + k]);
        }
    }

    /// @inheritdoc IModelRegistryBatch
    /// @dev Anyone may call it. Checks, in order: registry not stopped; version registered and not revoked; a batch
    /// verifier registered; a non-empty batch with as many instance vectors as proofs; every instance count and every
    /// instance `< r` and, for a `PROOF_COMMITMENT` version, every proof's first G1 point canonical
    /// (`ModelRegistryInputCommitmentNotCanonical(i)`), proof by proof; the batch verifier's code hash unchanged; then
    /// one call to the batch verifier (any failure -> `ModelRegistryBatchRejected` with the failing proof's index when
    /// the batch verifier names it).
    function verifyBatch(bytes32 modelId, uint32 version, bytes[] calldata proofs, uint256[][] calldata instances)
        external
        view
        returns (uint256[] memory inputCommitments, int256[][] memory outputs)
    {
        _checkActive(modelId, version);
        BatchVerifierRecord memory batch = _batchVerifiers[modelId][version];
        if (batch.verifier == address(0)) revert ModelRegistryNoBatchVerifier(modelId, version);
        uint256 n = proofs.length;
        if (n == 0 || instances.length != n) revert ModelRegistryInvalidBatch(n, instances.length);
        ModelVersion storage entry = _versions[modelId][version];
        inputCommitments = _checkBatch(entry, proofs, instances);
        bytes32 currentCodeHash = batch.verifier.codehash;
        if (currentCodeHash != batch.codeHash) {
            revert ModelRegistryVerifierCodeChanged(batch.verifier, batch.codeHash, currentCodeHash);
        }

        (bool ok, bytes memory ret) =
            batch.verifier.staticcall(abi.encodeCall(IHalo2BatchVerifier.verifyBatch, (proofs, instances)));
        if (!ok || ret.length != 32 || abi.decode(ret, (uint256)) != 1) {
            revert ModelRegistryBatchRejected(modelId, version, _failedIndex(ok, ret));
        }

        outputs = _decodeBatch(entry, instances);
    }

    /// @dev Checks every instance vector of a batch (count, every instance `< r`) and returns every proof's input
    /// commitment: its instance at `inputIndex`, or for a `PROOF_COMMITMENT` version the hash of its first G1 point
    /// (checked canonical here, before the batch verifier sees the proof).
    function _checkBatch(ModelVersion storage entry, bytes[] calldata proofs, uint256[][] calldata instances)
        private
        view
        returns (uint256[] memory inputCommitments)
    {
        uint256 n = instances.length;
        uint256 instanceCount = entry.instanceCount;
        uint256 input = entry.inputIndex;
        inputCommitments = new uint256[](n);
        for (uint256 i; i < n; ++i) {
            uint256[] calldata vector = instances[i];
            if (vector.length != instanceCount) revert ModelRegistryInstanceCountMismatch(instanceCount, vector.length);
            for (uint256 k; k < instanceCount; ++k) {
                if (vector[k] >= Bn254Field.MODULUS) revert ModelRegistryInstanceNotInField(k, vector[k]);
            }
            inputCommitments[i] = input == PROOF_COMMITMENT ? _proofCommitment(proofs[i], i) : vector[input];
        }
    }

    /// @dev Every proof's decoded outputs, per the version's layout.
    function _decodeBatch(ModelVersion storage entry, uint256[][] calldata instances)
        private
        view
        returns (int256[][] memory outputs)
    {
        uint256 n = instances.length;
        uint256 first = entry.outputIndex;
        uint256 outputCount = entry.outputCount;
        outputs = new int256[][](n);
        for (uint256 i; i < n; ++i) {
            uint256[] calldata vector = instances[i];
            int256[] memory decoded = new int256[](outputCount);
            for (uint256 k; k < outputCount; ++k) {
                decoded[k] = Bn254Field.toSigned(vector[first + k]);
            }
            outputs[i] = decoded;
        }
    }

    /// @dev The input commitment of a `PROOF_COMMITMENT` version: `uint256(keccak256(proof[0:64]))`, the hash of the
    /// proof's first G1 point (EZKL's unblinded KZG commitment to the input column; x then y, 32 bytes big-endian).
    /// Reverts with `ModelRegistryInputCommitmentNotCanonical(proofIndex)` when the proof is shorter than 64 bytes or a
    /// coordinate is `>= q`: `x + q` would otherwise encode the same point under another hash.
    function _proofCommitment(bytes calldata proof, uint256 proofIndex) private pure returns (uint256 commitment) {
        if (proof.length < 64) revert ModelRegistryInputCommitmentNotCanonical(proofIndex);
        uint256 x;
        uint256 y;
        assembly ("memory-safe") {
            x := calldataload(proof.offset)
            y := calldataload(add(proof.offset, 0x20))
        }
        if (x >= Bn254Field.BASE_MODULUS || y >= Bn254Field.BASE_MODULUS) {
            revert ModelRegistryInputCommitmentNotCanonical(proofIndex);
        }
        assembly ("memory-safe") {
            // scratch space (0x00-0x3f): no allocation
            mstore(0x00, x)
            mstore(0x20, y)
            commitment := keccak256(0x00, 0x40)
        }
    }

    /// @dev The index a batch verifier's `Halo2BatchVerifierProofRejected(index)` names, else `type(uint256).max`.
    function _failedIndex(bool ok, bytes memory ret) private pure returns (uint256 index) {
        index = type(uint256).max;
        if (!ok && ret.length == 36 && bytes4(ret) == IHalo2BatchVerifier.Halo2BatchVerifierProofRejected.selector) {
            assembly {
                index := mload(add(ret, 0x24))
            }
        }
    }

    // ------------------------------------------------------------------------------------------------ views

    /// @inheritdoc IModelRegistryBatch
    function getBatchVerifier(bytes32 modelId, uint32 version) external view returns (BatchVerifierRecord memory) {
        return _batchVerifiers[modelId][version];
    }

    /// @inheritdoc IModelRegistry
    function getModelVersion(bytes32 modelId, uint32 version) external view returns (ModelVersion memory) {
        return _versions[modelId][version];
    }

    /// @inheritdoc IModelRegistry
    function isActive(bytes32 modelId, uint32 version) external view returns (bool) {
        return !_stopped && _versions[modelId][version].status == ModelStatus.Active;
    }

    /// @notice True once a guardian has permanently stopped the registry.
    function stopped() external view returns (bool) {
        return _stopped;
    }

    /// @notice The BN254 scalar field modulus r; every public instance must be `< r`.
    function fieldModulus() external pure returns (uint256) {
        return Bn254Field.MODULUS;
    }

    /// @notice The `InstanceLayout.inputIndex` that marks a version whose input commitment is the proof's first G1
    /// point (`PROOF_COMMITMENT` = `type(uint16).max`): `verify` then returns `uint256(keccak256(proof[0:64]))`.
    function proofCommitmentIndex() external pure returns (uint16) {
        return PROOF_COMMITMENT;
    }

    /// @notice The BN254 base field modulus q; a `PROOF_COMMITMENT` proof's first point needs both coordinates `< q`.
    function baseFieldModulus() external pure returns (uint256) {
        return Bn254Field.BASE_MODULUS;
    }

    /// @notice Decodes a field element to the signed fixed-point integer it encodes (x > (r-1)/2 is negative).
    function decodeSigned(uint256 x) external pure returns (int256) {
        return Bn254Field.toSigned(x);
    }

    /// @notice Encodes a signed fixed-point integer as a field element (negatives as r - |v|).
    function encodeSigned(int256 v) external pure returns (uint256) {
        return Bn254Field.fromSigned(v);
    }
}
