"""Turn EZKL's generated Halo2 verifier into a batch verifier: N proofs, one pairing check.

EZKL 23 (halo2-solidity-verifier) writes one assembly block per circuit: transcript ->
challenges -> quotient evaluation -> a multi-scalar multiplication (MSM) that ends in two G1
points ``L`` and ``W'`` -> ``ecPairing(L, [1]_2; W', -[s]_2)``. This module rewrites that block,
anchor by anchor, into two contracts (so that a verifier that just fits EIP-170 still gets one):

* ``<Name>BatchVerifierInputs.batchInputs(proof, instances)`` runs every check of the single
  verifier up to the pairing and returns ``L`` and ``W'`` **without** the terms that are the
  same for every proof of the model version (the verifying key's fixed and permutation
  commitments and the generator G1), together with the scalar each of those points had in this
  proof's MSM;
* ``<Name>BatchVerifier.verifyBatch(proofs, instances)`` (it deploys the inputs contract in its
  constructor, so its code hash pins that address) calls it for every proof, folds the results
  with weights ``w_0 = 1, w_i = keccak256(seed, i) mod r`` (``seed = keccak256(msg.data)``, so
  every proof and instance), adds the shared points once with the summed scalars, and does ONE
  pairing check.

Soundness: each proof ``i`` is valid iff ``e(L_i, [1]_2) * e(W'_i, -[s]_2) = 1``, i.e.
``d_i = 0`` for the discrete logs ``d_i`` of the pairing products. The batch checks
``sum_i w_i d_i = 0``; the weights are fixed by a hash of everything the prover chose, so if any
``d_i != 0`` the check passes with probability ``1/r`` per hash query (``r ~ 2^254``). Moving
the shared points out of each proof's MSM is exact: ``L_i = L'_i + sum_j s_ij P_j`` and hence
``sum_i w_i L_i = sum_i w_i L'_i + sum_j (sum_i w_i s_ij) P_j``.

The transformation is a program, never a hand edit: every anchor it rewrites must occur exactly
once (or in the one shape it knows); anything else raises :class:`UnknownVerifierShape`.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from prover.exceptions import UnknownVerifierShape, VerifierGenerationError
from prover.zk.fields import BN254_R

#: The interface (and error prefix) every generated batch verifier implements.
BATCH_INTERFACE = "IHalo2BatchVerifier"
#: Calldata offset of ``proof``'s bytes under the standard ABI encoding, which the generated
#: verifier's literal ``calldataload(0x...)`` offsets assume.
PROOF_CALLDATA_OFFSET = 0x64

_MUL_ZETA = "success := ec_mul_acc(success, mload(ZETA_MPTR))"
_ADD_RE = re.compile(r"success := ec_add_acc\(success, (\S+\(\S+\)), (\S+\(\S+\))\)")
_MLOAD_LIT = re.compile(r"mload\((0x[0-9a-f]+)\)")
_LOOP_RE = re.compile(
    r"(?P<indent>[ \t]*)for\n\s*\{\n\s*let mptr := (?P<start>0x[0-9a-f]+)\n"
    r"\s*let mptr_end := (?P<end>0x[0-9a-f]+)\n\s*\}\n\s*lt\(mptr_end, mptr\)\n"
    r"\s*\{ mptr := sub\(mptr, 0x40\) \}\n\s*\{\n"
    r"\s*success := ec_mul_acc\(success, mload\(ZETA_MPTR\)\)\n"
    r"\s*success := ec_add_acc\(success, (?P<load>mload|calldataload)\(mptr\), "
    r"(?P=load)\(add\(mptr, 0x20\)\)\)\n"
    r"\s*\}\n"
)
_G1_TERM_RE = re.compile(
    r"[ \t]*mstore\(0x80, mload\(G1_X_MPTR\)\)\n"
    r"[ \t]*mstore\(0xa0, mload\(G1_Y_MPTR\)\)\n"
    r"[ \t]*success := ec_mul_tmp\(success, sub\(R, mload\(R_EVAL_MPTR\)\)\)\n"
    r"[ \t]*success := ec_add_acc\(success, mload\(0x80\), mload\(0xa0\)\)\n"
)
_VK_WORD_RE = re.compile(r"mstore\((0x[0-9a-f]+), (0x[0-9a-f]{64})\) // (\S+)")
_G2_NAMES = (
    "g2_x_1",
    "g2_x_2",
    "g2_y_1",
    "g2_y_2",
    "neg_s_g2_x_1",
    "neg_s_g2_x_2",
    "neg_s_g2_y_1",
    "neg_s_g2_y_2",
)


@dataclass(frozen=True)
class SharedPoint:
    """A G1 point that is the same in every proof's MSM, and how its scalar is computed."""

    name: str
    x: int
    y: int
    zeta_power: int | None  # scalar zeta^k; None: the generator's scalar -r_eval


@dataclass(frozen=True)
class BatchVerifier:
    """The generated source and what the transformation found."""

    contract_name: str  # verifyBatch; deploys the inputs contract in its constructor
    inputs_name: str  # batchInputs: the single verifier's checks up to its pairing
    source: str
    shared: tuple[SharedPoint, ...]
    outputs: int  # words batchInputs returns: L, W' and one scalar per shared point


def batch_contract_name(single_name: str) -> str:
    """``BreastCancerLrVerifier`` -> ``BreastCancerLrBatchVerifier``."""
    if single_name.endswith("Verifier"):
        return single_name[: -len("Verifier")] + "BatchVerifier"
    return single_name + "Batch"


def _once(pattern: str | re.Pattern[str], text: str, label: str) -> re.Match[str]:
    regex = re.compile(pattern) if isinstance(pattern, str) else pattern
    found = list(regex.finditer(text))
    if len(found) != 1:
        raise UnknownVerifierShape(label, len(found))
    return found[0]


def _replace_once(text: str, pattern: str | re.Pattern[str], new: str, label: str) -> str:
    match = _once(pattern, text, label)
    return text[: match.start()] + new + text[match.end() :]


def _vk_words(body: str) -> dict[str, tuple[int, int]]:
    """The full verifying key the verifier loads: comment name -> (memory address, value)."""
    words: dict[str, tuple[int, int]] = {}
    for match in _VK_WORD_RE.finditer(body):
        address, value, name = int(match[1], 16), int(match[2], 16), match[3]
        if name in words and words[name] != (address, value):
            raise UnknownVerifierShape(f"vk word {name}", 2, "with one value")
        words[name] = (address, value)
    for name in ("g1_x", "g1_y", *_G2_NAMES):
        if name not in words:
            raise UnknownVerifierShape(f"vk word {name}", 0)
    return words


def _unroll(chain: str) -> tuple[str, dict[str, tuple[str, int]]]:
    """Unroll the chain's ``for mptr`` loops over vk points into straight adds.

    Loops over proof points stay loops (unrolling them only adds code); each becomes one
    placeholder line, returned with its text and its number of Horner steps.
    """
    loops: dict[str, tuple[str, int]] = {}

    def unrolled(match: re.Match[str]) -> str:
        indent = match["indent"]
        start, end, load = int(match["start"], 16), int(match["end"], 16), match["load"]
        if start <= end or (start - end) % 0x40:
            raise UnknownVerifierShape("MSM loop bounds", 1, "descending by 0x40")
        if load == "calldataload":
            key = f"@@PROOF_LOOP_{len(loops)}@@"
            loops[key] = (match[0], (start - end) // 0x40)
            return f"{indent}{key}\n"
        lines = []
        for mptr in range(start, end, -0x40):
            lines.append(f"{indent}{_MUL_ZETA}\n")
            lines.append(
                f"{indent}success := ec_add_acc(success, mload({mptr:#06x}), "
                f"mload({mptr + 0x20:#06x}))\n"
            )
        return "".join(lines)

    return _LOOP_RE.sub(unrolled, chain), loops


def _rewrite_chain(
    chain: str, comms: dict[int, tuple[str, int, int]]
) -> tuple[str, list[tuple[str, int, int, int]]]:
    """Drop the vk commitments from the Horner chain; returns (new chain, their exponents).

    The chain computes ``acc = (...((P_0 z + P_1) z + P_2)...) z + P_m``: a point added with
    ``k`` later multiplications by zeta has the scalar ``zeta^k``. Dropping a vk point leaves
    the other points' scalars unchanged; the multiplications between two remaining points are
    merged into one multiplication by a power of zeta.
    """
    flat, loops = _unroll(chain)
    ops: list[tuple[str, str, int]] = []  # (kind, text, zeta steps): mul | add | vk | loop
    indent = ""
    for raw in flat.splitlines():
        line = raw.strip()
        if not line:
            continue
        indent = raw[: len(raw) - len(raw.lstrip())]
        if line == _MUL_ZETA:
            ops.append(("mul", "", 1))
            continue
        if line in loops:
            text, steps = loops[line]
            ops.append(("loop", text, steps))
            continue
        add = _ADD_RE.fullmatch(line)
        if add is None:
            raise UnknownVerifierShape(f"MSM line {line[:60]}", 0, "to be ec_mul_acc/ec_add_acc")
        x, y = _MLOAD_LIT.fullmatch(add[1]), _MLOAD_LIT.fullmatch(add[2])
        if x and y and int(x[1], 16) in comms:
            if int(y[1], 16) != int(x[1], 16) + 0x20:
                raise UnknownVerifierShape(f"vk point {add[1]}", 1, "with y at x + 0x20")
            ops.append(("vk", x[1], 0))
        elif x or y:
            raise UnknownVerifierShape(f"MSM memory point {line[:60]}", 1, "to be a vk commitment")
        else:
            ops.append(("add", line, 0))
    exponents: list[tuple[str, int, int, int]] = []
    for index, (kind, text, _) in enumerate(ops):
        if kind == "vk":
            name, px, py = comms[int(text, 16)]
            exponents.append((name, px, py, sum(steps for _, _, steps in ops[index + 1 :])))
    if not exponents:
        raise UnknownVerifierShape("vk commitments in the MSM", 0, "at least once")
    out: list[str] = []
    run = 0
    for kind, text, _ in [*ops, ("end", "", 0)]:
        if kind == "mul":
            run += 1
            continue
        if kind == "vk":
            continue
        if run == 1:
            out.append(f"{indent}{_MUL_ZETA}\n")
        elif run > 1:
            out.append(
                f"{indent}success := ec_mul_acc(success, pow_mod(mload(ZETA_MPTR), {run}))\n"
            )
        run = 0
        if kind == "add":
            out.append(f"{indent}{text}\n")
        elif kind == "loop":
            out.append(text)
    return "".join(out), exponents


_POW_MOD = """            // zkcare batch: base^e mod R (e: the number of Horner steps merged)
            function pow_mod(base, e) -> ret {
                ret := 1
                for {} gt(e, 0) { e := sub(e, 1) } { ret := mulmod(ret, base, R) }
            }

"""


def _tail(shared: list[SharedPoint], indent: str = "            ") -> str:
    lines = [
        f"{indent}// zkcare batch: no pairing here; return L (without the shared points), W' and",
        f"{indent}// the scalar of every shared point in this proof's MSM.",
        f"{indent}if iszero(success) {{",
        f"{indent}    revert(0x00, 0x00)",
        f"{indent}}}",
        f"{indent}{{",
        f"{indent}    let lhs_x := mload(PAIRING_LHS_X_MPTR)",
        f"{indent}    let lhs_y := mload(PAIRING_LHS_Y_MPTR)",
        f"{indent}    let rhs_x := mload(PAIRING_RHS_X_MPTR)",
        f"{indent}    let rhs_y := mload(PAIRING_RHS_Y_MPTR)",
        f"{indent}    let zeta := mload(ZETA_MPTR)",
        f"{indent}    let r_eval := mload(R_EVAL_MPTR)",
        f"{indent}    mstore(0x00, lhs_x)",
        f"{indent}    mstore(0x20, lhs_y)",
        f"{indent}    mstore(0x40, rhs_x)",
        f"{indent}    mstore(0x60, rhs_y)",
    ]
    powers = sorted((p.zeta_power, j) for j, p in enumerate(shared) if p.zeta_power is not None)
    lines.append(f"{indent}    let pw := 1")
    current = 0
    for power, j in powers:
        while current < power:
            lines.append(f"{indent}    pw := mulmod(pw, zeta, R)")
            current += 1
        lines.append(f"{indent}    mstore({0x80 + 0x20 * j:#06x}, pw) // {shared[j].name}")
    for j, p in enumerate(shared):
        if p.zeta_power is None:
            lines.append(
                f"{indent}    mstore({0x80 + 0x20 * j:#06x}, mod(sub(R, r_eval), R)) // g1"
            )
    lines.append(f"{indent}}}")
    lines.append(f"{indent}return(0x00, {0x20 * (4 + len(shared)):#06x})")
    return "\n".join(lines) + "\n"


def _batch_contract(
    name: str, inputs: str, shared: list[SharedPoint], g2: dict[str, int], outputs: int
) -> str:
    n_shared = len(shared)
    msm = "\n".join(
        f"                ok := ec_mul_add(ok, acc, {p.x:#066x}, {p.y:#066x}, "
        f"mload(add(scalars, {0x20 * j:#06x}))) // {p.name}"
        for j, p in enumerate(shared)
    )
    accumulate = (
        f"                    for {{ let j := 0 }} lt(j, {n_shared}) {{ j := add(j, 1) }} {{\n"
        "                        let at := add(scalars, shl(5, j))\n"
        "                        let s := mload(add(out, shl(5, add(j, 4))))\n"
        "                        mstore(at, addmod(mload(at), mulmod(w, s, R), R))\n"
        "                    }"
    )
    return f"""/// @title {name}
/// @notice Verifies N proofs of one model version with one pairing check (see `{inputs}` for the
/// per-proof part, which this contract deploys and calls).
contract {name} {{
    uint256 internal constant R = {BN254_R};

    {inputs} private immutable _inputs;

    constructor() {{
        _inputs = new {inputs}();
    }}

    /// @notice The contract that runs each proof's own checks (deployed by this one; no owner, no
    /// upgrade: this contract's code hash pins its address).
    function inputsContract() external view returns (address) {{
        return address(_inputs);
    }}

    /// @dev The batch is empty.
    error Halo2BatchVerifierEmptyBatch();
    /// @dev `proofs` and `instances` differ in length.
    error Halo2BatchVerifierLengthMismatch(uint256 proofs, uint256 instances);
    /// @dev Proof `index` failed a check of its own (length, encoding, field, curve, transcript).
    error Halo2BatchVerifierProofRejected(uint256 index);
    /// @dev The one pairing check failed: at least one proof of the batch is invalid.
    error Halo2BatchVerifierPairingFailed();

    /// @notice Verifies every `proofs[i]` against `instances[i]` with one pairing check.
    /// Anyone may call it.
    /// @dev Weights: w_0 = 1, w_i = keccak256(keccak256(msg.data), i) mod r. Reverts (never
    /// returns false) when any proof is invalid: `Halo2BatchVerifierProofRejected(i)` when
    /// proof i fails on its own, otherwise `Halo2BatchVerifierPairingFailed()`.
    /// @return True when every proof is valid.
    function verifyBatch(bytes[] calldata proofs, uint256[][] calldata instances)
        external
        view
        returns (bool)
    {{
        uint256 n = proofs.length;
        if (n == 0) revert Halo2BatchVerifierEmptyBatch();
        if (instances.length != n) revert Halo2BatchVerifierLengthMismatch(n, instances.length);
        bytes32 seed = keccak256(msg.data);
        // sum w_i L'_i (x, y), sum w_i W'_i (x, y); (0, 0) is the point at infinity
        uint256[4] memory acc;
        uint256[{max(n_shared, 1)}] memory scalars; // sum w_i s_ij for every shared point j
        for (uint256 i; i < n; ++i) {{
            uint256 freeMemory;
            assembly {{
                freeMemory := mload(0x40)
            }}
            bytes memory data = abi.encodeCall(_inputs.batchInputs, (proofs[i], instances[i]));
            (bool called, bytes memory ret) = address(_inputs).staticcall(data);
            if (!called || ret.length != {0x20 * outputs}) {{
                revert Halo2BatchVerifierProofRejected(i);
            }}
            uint256 w = i == 0 ? 1 : uint256(keccak256(abi.encode(seed, i))) % R;
            bool ok = true;
            assembly {{
                let out := add(ret, 0x20)
                let m := mload(0x40)
                // acc.L += w * L'_i ; acc.W += w * W'_i
                mstore(m, mload(out))
                mstore(add(m, 0x20), mload(add(out, 0x20)))
                mstore(add(m, 0x40), w)
                ok := and(ok, staticcall(gas(), 0x07, m, 0x60, m, 0x40))
                mstore(add(m, 0x40), mload(acc))
                mstore(add(m, 0x60), mload(add(acc, 0x20)))
                ok := and(ok, staticcall(gas(), 0x06, m, 0x80, acc, 0x40))
                mstore(m, mload(add(out, 0x40)))
                mstore(add(m, 0x20), mload(add(out, 0x60)))
                mstore(add(m, 0x40), w)
                ok := and(ok, staticcall(gas(), 0x07, m, 0x60, m, 0x40))
                mstore(add(m, 0x40), mload(add(acc, 0x40)))
                mstore(add(m, 0x60), mload(add(acc, 0x60)))
                ok := and(ok, staticcall(gas(), 0x06, m, 0x80, add(acc, 0x40), 0x40))
                {{
{accumulate}
                }}
                mstore(0x40, freeMemory) // this iteration's call data and return data are dead
            }}
            if (!ok) revert Halo2BatchVerifierProofRejected(i);
        }}
        bool valid = true;
        assembly {{
            function ec_mul_add(success, acc_ptr, x, y, s) -> ret {{
                let m := mload(0x40)
                mstore(m, x)
                mstore(add(m, 0x20), y)
                mstore(add(m, 0x40), s)
                ret := and(success, staticcall(gas(), 0x07, m, 0x60, m, 0x40))
                mstore(add(m, 0x40), mload(acc_ptr))
                mstore(add(m, 0x60), mload(add(acc_ptr, 0x20)))
                ret := and(ret, staticcall(gas(), 0x06, m, 0x80, acc_ptr, 0x40))
            }}
            let ok := true
            {{
{msm}
            }}
            let m := mload(0x40)
            mstore(m, mload(acc))
            mstore(add(m, 0x20), mload(add(acc, 0x20)))
            mstore(add(m, 0x40), {g2["g2_x_1"]:#066x})
            mstore(add(m, 0x60), {g2["g2_x_2"]:#066x})
            mstore(add(m, 0x80), {g2["g2_y_1"]:#066x})
            mstore(add(m, 0xa0), {g2["g2_y_2"]:#066x})
            mstore(add(m, 0xc0), mload(add(acc, 0x40)))
            mstore(add(m, 0xe0), mload(add(acc, 0x60)))
            mstore(add(m, 0x100), {g2["neg_s_g2_x_1"]:#066x})
            mstore(add(m, 0x120), {g2["neg_s_g2_x_2"]:#066x})
            mstore(add(m, 0x140), {g2["neg_s_g2_y_1"]:#066x})
            mstore(add(m, 0x160), {g2["neg_s_g2_y_2"]:#066x})
            ok := and(ok, staticcall(gas(), 0x08, m, 0x180, m, 0x20))
            valid := and(ok, eq(mload(m), 1))
        }}
        if (!valid) revert Halo2BatchVerifierPairingFailed();
        return true;
    }}
}}
"""


_CALLDATA_LOOP_BOUNDS = re.compile(
    r"let mptr := 0x[0-9a-f]+\n\s*let mptr_end := 0x[0-9a-f]+\n"
    r"(?P<loop>(?:(?!\bfor\b)[\s\S]){0,400})"
)


def _calldata_bounds(match: re.Match[str]) -> str:
    """Drop a loop's bounds when the loop walks calldata (``calldataload(mptr…``) only."""
    loop = match["loop"]
    return loop if "calldataload(mptr" in loop and "mload(mptr" not in loop else match[0]


def _drop_unused_commitments(body: str, comms: dict[int, tuple[str, int, int]]) -> str:
    """Stop loading the vk's commitments into memory when nothing reads them any more.

    Conservative: if any hex literal in their memory range is left in the code (other than the
    stores themselves and calldata offsets), every store stays.
    """
    low, high = min(comms), max(comms) + 0x40
    store = re.compile(
        r"[ \t]*mstore\((0x[0-9a-f]+), 0x[0-9a-f]{64}\) // "
        r"(?:fixed|permutation)_comms\[\d+\]\.[xy]\n"
    )
    rest = store.sub("", body)
    # calldata offsets and lengths share the numbers but not the memory: leave them out
    memory_code = re.sub(
        r"calldataload\(0x[0-9a-f]+\)|_CPTR = 0x[0-9a-f]+;|eq\(0x[0-9a-f]+, proof\.length\)"
        r"|add\(proof_cptr, 0x[0-9a-f]+\)",
        "",
        _CALLDATA_LOOP_BOUNDS.sub(_calldata_bounds, rest),
    )
    if any(low <= int(h, 16) < high for h in re.findall(r"\b0x[0-9a-f]{1,4}\b", memory_code)):
        return body
    return rest


def generate_batch_verifier(single_source: str, contract_name: str | None = None) -> BatchVerifier:
    """Transform a generated (and zkcare-headed) single verifier into its batch verifier."""
    head = _once(r"\bcontract\s+([A-Z][A-Za-z0-9_]*)\s*\{\n", single_source, "contract <Name> {")
    single_name = head[1]
    name = contract_name or batch_contract_name(single_name)
    if not re.fullmatch(r"[A-Z][A-Za-z0-9_]*", name):
        raise VerifierGenerationError(f"invalid Solidity contract name {name!r}")
    inputs_name = f"{name}Inputs"
    header_lines = [
        line[3:]
        for line in single_source[: head.start()].splitlines()
        if line.startswith("// ") and "SPDX" not in line and "GENERATED" not in line
    ]
    body = single_source[head.start() :]
    words = _vk_words(body)
    comms = {
        address: (label.rsplit(".", 1)[0], value, words[label.rsplit(".", 1)[0] + ".y"][1])
        for label, (address, value) in words.items()
        if re.fullmatch(r"(fixed|permutation)_comms\[\d+\]\.x", label)
    }
    if not comms:
        raise UnknownVerifierShape("fixed_comms/permutation_comms in the vk", 0, "at least once")

    body = _replace_once(body, head.re, f"contract {inputs_name} {{\n", "contract")
    body = _replace_once(
        body,
        r"function verifyProof\(\s*bytes calldata proof,\s*uint256\[\] calldata instances\s*\)"
        r" public returns \(bool\) \{",
        "@@SIGNATURE@@",
        "function verifyProof(bytes calldata proof, uint256[] calldata instances) public",
    )
    length = _once(
        r"(?m)^([ \t]*)success := and\(success, eq\(0x[0-9a-f]+, proof\.length\)\)\n",
        body,
        "proof length check",
    )
    body = (
        body[: length.end()]
        + f"{length[1]}// zkcare batch: the literal calldata offsets below assume proof at "
        f"{PROOF_CALLDATA_OFFSET:#x}\n"
        + f"{length[1]}success := and(success, eq(proof.offset, {PROOF_CALLDATA_OFFSET:#x}))\n"
        + body[length.end() :]
    )
    modulus = _once(r"\n[ \t]*// Modulus\n", body, "// Modulus")
    body = body[: modulus.start() + 1] + _POW_MOD + body[modulus.start() + 1 :]

    start = _once(r"let nu := mload\(NU_MPTR\)\n", body, "let nu := mload(NU_MPTR)")
    init = re.match(
        r"[ \t]*mstore\(0x00, calldataload\(0x[0-9a-f]+\)\)\n"
        r"[ \t]*mstore\(0x20, calldataload\(0x[0-9a-f]+\)\)\n",
        body[start.end() :],
    )
    if init is None:
        raise UnknownVerifierShape("MSM accumulator initialised from the proof", 0)
    chain_start = start.end() + init.end()
    chain_end = body.index("mstore(0x80,", chain_start)
    chain_end = body.rindex("\n", chain_start, chain_end) + 1
    new_chain, exponents = _rewrite_chain(body[chain_start:chain_end], comms)
    body = body[:chain_start] + new_chain + body[chain_end:]
    pairing_at = body.find("mstore(PAIRING_LHS_X_MPTR, mload(0x00))", chain_start)
    if pairing_at < 0 or "HAS_ACCUMULATOR" in body[chain_start:pairing_at]:
        raise UnknownVerifierShape("mstore(PAIRING_LHS_X_MPTR, ...) after the MSM", 0)
    msm_tail = body[chain_start:pairing_at]
    msm_tail = _replace_once(msm_tail, _G1_TERM_RE, "", "G1 * -r_eval term")
    body = body[:chain_start] + msm_tail + body[pairing_at:]

    shared = [
        SharedPoint(label, px, py, power)
        for label, px, py, power in exponents
        if (px, py) != (0, 0)  # a point at infinity adds nothing
    ]
    shared.append(SharedPoint("g1", words["g1_x"][1], words["g1_y"][1], None))
    outputs = 4 + len(shared)
    body = _replace_once(
        body,
        r"[ \t]*// Perform pairing\n[\s\S]*?return\(0x00, 0x20\)\n",
        _tail(shared),
        "// Perform pairing ... return(0x00, 0x20)",
    )
    signature = (
        "/// @notice This proof's pairing inputs, without the points shared by every proof, "
        "and the scalars of\n    /// those points (what `verifyBatch` folds). Anyone may call "
        "it; on its own it proves nothing.\n"
        "    /// @dev Runs every check of the single verifier before its pairing; reverts with "
        "empty data on any failure.\n"
        f"    function batchInputs(bytes calldata proof, uint256[] calldata instances) public view "
        f"returns (uint256[{outputs}] memory) {{"
    )
    body = body.replace("@@SIGNATURE@@", signature, 1)
    body = _drop_unused_commitments(body, comms)
    if not body.rstrip().endswith("}"):
        raise UnknownVerifierShape("closing brace of the contract", 0)
    g2 = {label: words[label][1] for label in _G2_NAMES}
    body = body.rstrip() + "\n\n" + _batch_contract(name, inputs_name, shared, g2, outputs)
    digest = hashlib.sha256(single_source.encode()).hexdigest()
    header = [
        "// SPDX-License-Identifier: MIT",
        "// GENERATED FILE - DO NOT EDIT. Regenerate with `python -m prover build`.",
        f"// Generator: zkcare prover.zk.batch from {single_name} (sha256 {digest})",
        *[
            f"// {line.replace('Generator:', 'Single verifier generator:', 1)}"
            for line in header_lines
            if not line.startswith("contract:")
        ],
        f"// contract: {name}",
    ]
    pragma = _once(r"pragma solidity [^;]+;\n", single_source[: head.start()], "pragma solidity")
    source = "\n".join(header) + "\n\n" + pragma[0] + "\n" + body
    if source.count("{") != source.count("}"):
        raise VerifierGenerationError("batch verifier has unbalanced braces")
    return BatchVerifier(name, inputs_name, source, tuple(shared), outputs)
