// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";

import {Bn254Field} from "./Bn254Field.sol";
import {IHalo2Verifier} from "./interfaces/IHalo2Verifier.sol";
import {IModelRegistry, InstanceLayout, ModelStatus, ModelVersion} from "./interfaces/IModelRegistry.sol";

/// @title ModelRegistry
/// @notice Maps model id -> version -> generated Halo2 verifier, with provenance (ONNX and verifying-key sha256, the
/// verifier's code hash) and the public-instance layout. It is the single place where proofs are verified.
/// @dev Router pattern (cf. risc0's RiscZeroVerifierRouter): a version, once revoked, is a tombstone and can never be
/// registered or activated again. Roles:
/// - `DEFAULT_ADMIN_ROLE` grants and revokes roles; in production hold it in a `TimelockController`.
/// - `REGISTRAR_ROLE` registers new model versions.
/// - `GUARDIAN_ROLE` revokes versions immediately and can stop the whole registry permanently.
contract ModelRegistry is AccessControl, IModelRegistry {
    /// @notice Role allowed to register model versions.
    bytes32 public constant REGISTRAR_ROLE = keccak256("REGISTRAR_ROLE");
    /// @notice Role allowed to revoke model versions and to stop the registry.
    bytes32 public constant GUARDIAN_ROLE = keccak256("GUARDIAN_ROLE");
    /// @notice Largest accepted output scale (fractional bits).
    uint8 public constant MAX_OUTPUT_SCALE = 128;

    mapping(bytes32 modelId => mapping(uint32 version => ModelVersion)) private _versions;
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
    /// @dev The layout is empty, has no output, the input index or the output range does not fit the instances, the
    /// input index lies inside the output range, or the scale is too large.
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
    /// (fractional bits). Requires `instanceCount > 0`, `inputIndex < instanceCount`, `outputCount >= 1`,
    /// `outputIndex + outputCount <= instanceCount`, `inputIndex` outside the output range and
    /// `outputScale <= MAX_OUTPUT_SCALE`.
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
        if (
            count == 0 || input >= count || layout.outputCount == 0 || end > count || (input >= first && input < end)
                || layout.outputScale > MAX_OUTPUT_SCALE
        ) {
            revert ModelRegistryInvalidLayout(
                layout.instanceCount, layout.inputIndex, layout.outputIndex, layout.outputCount, layout.outputScale
            );
        }
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
    /// `< r`; verifier code hash unchanged; then calls the verifier (revert or `false` -> `ModelRegistryProofRejected`).
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

        inputCommitment = instances[entry.inputIndex];
        uint256 first = entry.outputIndex;
        uint256 outputCount = entry.outputCount;
        outputs = new int256[](outputCount);
        for (uint256 k; k < outputCount; ++k) {
            outputs[k] = Bn254Field.toSigned(instances[first + k]);
        }
    }

    // ------------------------------------------------------------------------------------------------ views

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

    /// @notice Decodes a field element to the signed fixed-point integer it encodes (x > (r-1)/2 is negative).
    function decodeSigned(uint256 x) external pure returns (int256) {
        return Bn254Field.toSigned(x);
    }

    /// @notice Encodes a signed fixed-point integer as a field element (negatives as r - |v|).
    function encodeSigned(int256 v) external pure returns (uint256) {
        return Bn254Field.fromSigned(v);
    }
}
