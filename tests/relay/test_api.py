"""The HTTP API: bad input -> specific 4xx and nothing queued, 429 on a full queue, idempotency
under concurrent duplicates, the OpenAPI schema, and a schemathesis fuzz against that schema."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from prover.exceptions import RelayError
from prover.relay.api import create_app
from prover.relay.service import Relay
from prover.relay.states import JobState

from .support import bearer, job_body, make_records, served, token_for

RECORD = make_records(1, seed=21, client_salt_every=1)[0]


@pytest.fixture(scope="module")
def policy(dev_chain, ledger):
    ledger.add_records([RECORD])
    return dev_chain.issue_policies(1)[0]


@pytest.fixture(scope="module")
def other_model_policy(dev_chain):
    """A policy whose product is for version 2 of the model (the relay proves version 1)."""
    dev_chain.register_version(2)
    product = dev_chain.create_product(2)
    return dev_chain.issue_policies(1, product_id=product)[0]


@pytest.fixture
def relay(make_relay):
    return make_relay(process=False, max_queue=4)


@pytest.fixture
def client(relay, client_for):
    return client_for(relay)


def _body(policy: int, **changes) -> dict:
    body = job_body(RECORD, policy, "bad-input-0001")
    for key, value in changes.items():
        if value is _DROP:
            body.pop(key)
        else:
            body[key] = value
    return body


_DROP = object()


def _features(index: int, value) -> list:
    features = list(RECORD.features)
    features[index] = value
    return features


def _raw(body: dict, replace: tuple[str, str] | None = None) -> bytes:
    text = json.dumps(body)
    if replace:
        text = text.replace(*replace, 1)
    return text.encode()


BAD_INPUT = [
    # (id, body builder(policy) -> bytes, status, expected detail fragment)
    ("malformed-json", lambda p: b'{"idempotency_key": "abcdefgh", ', 400, "malformed JSON:"),
    ("truncated-json", lambda p: _raw(_body(p))[:-7], 400, "malformed JSON:"),
    ("not-an-object", lambda p: b"[1, 2, 3]", 422, "body: Input should be a valid dictionary"),
    ("empty-body", lambda p: b"", 422, "body: Field required"),
    (
        "29-features",
        lambda p: _raw(_body(p, features=RECORD.features[:29])),
        422,
        "invalid patient record: model breast_cancer_lr takes 30 features, got 29",
    ),
    (
        "31-features",
        lambda p: _raw(_body(p, features=[*RECORD.features, 1.0])),
        422,
        "invalid patient record: model breast_cancer_lr takes 30 features, got 31",
    ),
    (
        "no-features",
        lambda p: _raw(_body(p, features=[])),
        422,
        "features: List should have at least 1 item after validation, not 0",
    ),
    (
        "nan",
        lambda p: _raw(_body(p, features=_features(3, 12345.5)), ("12345.5", "NaN")),
        422,
        "features[3]: Input should be a finite number",
    ),
    (
        "infinity",
        lambda p: _raw(_body(p, features=_features(4, 12345.5)), ("12345.5", "Infinity")),
        422,
        "features[4]: Input should be a finite number",
    ),
    (
        "-infinity",
        lambda p: _raw(_body(p, features=_features(5, 12345.5)), ("12345.5", "-Infinity")),
        422,
        "features[5]: Input should be a finite number",
    ),
    (
        "overflow",
        lambda p: _raw(_body(p, features=_features(6, 12345.5)), ("12345.5", "1e999")),
        422,
        "features[6]: Input should be a finite number",
    ),
    (
        "negative",
        lambda p: _raw(_body(p, features=_features(0, -1.5))),
        422,
        "model breast_cancer_lr: features[0] (mean radius) is negative; the card allows [",
    ),
    (
        "out-of-range",
        lambda p: _raw(_body(p, features=_features(3, 1e9))),
        422,
        "model breast_cancer_lr: features[3] (mean area) is outside the allowed range [0, ",
    ),
    (
        "string-feature",
        lambda p: _raw(_body(p, features=_features(2, "12.5"))),
        422,
        "features[2]: Input should be a valid number",
    ),
    (
        "bool-feature",
        lambda p: _raw(_body(p, features=_features(2, True))),
        422,
        "features[2]: Input should be a valid number",
    ),
    (
        "null-feature",
        lambda p: _raw(_body(p, features=_features(2, None))),
        422,
        "features[2]: Input should be a valid number",
    ),
    (
        "short-salt",
        lambda p: _raw(_body(p, salt=[1] * 5)),
        422,
        "invalid salt: model breast_cancer_lr v1: expected 11 limbs, got 5",
    ),
    (
        "long-salt",
        lambda p: _raw(_body(p, salt=[1] * 12)),
        422,
        "salt: List should have at most 11",
    ),
    (
        "wide-salt-limb",
        lambda p: _raw(_body(p, salt=[1 << 24] + [1] * 10)),
        422,
        "salt[0]: Input should be less than 16777216",
    ),
    (
        "negative-salt-limb",
        lambda p: _raw(_body(p, salt=[1] * 10 + [-1])),
        422,
        "salt[10]: Input should be greater than or equal to 0",
    ),
    (
        "unknown-model",
        lambda p: _raw(_body(p, model="nope")),
        422,
        "unknown model name or version; this relay proves: breast_cancer_lr v1",
    ),
    (
        "unknown-model-version",
        lambda p: _raw(_body(p, model_version=2)),
        422,
        "unknown model name or version; this relay proves: breast_cancer_lr v1, diabetes_mlp v1",
    ),
    (
        "unknown-policy",
        lambda p: _raw(_body(999_999)),
        422,
        "policy 999999: no such policy on ClaimSettlement 0x",
    ),
    (
        "policy-zero",
        lambda p: _raw(_body(0)),
        422,
        "policy_id: Input should be greater than or equal to 1",
    ),
    (
        "policy-too-big",
        lambda p: _raw(_body(2**256)),
        422,
        "policy_id: Input should be less than",
    ),
    (
        "policy-as-string",
        lambda p: _raw(_body(p, policy_id=str(p))),
        422,
        "policy_id: Input should be a valid integer",
    ),
    (
        "missing-features",
        lambda p: _raw(_body(p, features=_DROP)),
        422,
        "features: Field required",
    ),
    (
        "extra-field",
        lambda p: _raw(_body(p, patient_name="Jane Doe")),
        422,
        "patient_name: Extra inputs are not permitted",
    ),
    (
        "short-idempotency-key",
        lambda p: _raw(_body(p, idempotency_key="abc")),
        422,
        "idempotency_key: String should have at least 8 characters",
    ),
    (
        "odd-idempotency-key",
        lambda p: _raw(_body(p, idempotency_key="has spaces in it")),
        422,
        "idempotency_key: String should match pattern",
    ),
    ("empty-record-id", lambda p: _raw(_body(p, record_id="")), 422, "record_id: String should"),
    (
        "oversized",
        lambda p: _raw(_body(p, record_id="x" * 20_000)),
        413,
        "bytes; the limit is 16384 bytes",
    ),
]


@pytest.mark.parametrize(
    "make_body,status,detail", [c[1:] for c in BAD_INPUT], ids=[c[0] for c in BAD_INPUT]
)
def test_bad_input_gets_a_specific_4xx_and_queues_nothing(
    client, relay, policy, make_body, status, detail
):
    response = client.post(
        "/v1/jobs", content=make_body(policy), headers={"Content-Type": "application/json"}
    )
    assert response.status_code == status, response.text
    body = response.json()
    assert list(body) == ["detail"] and detail in body["detail"], body
    assert "\n" not in body["detail"]
    assert all(n == 0 for n in relay.store.counts().values())
    # the service keeps serving, and a valid job still goes through
    assert client.get("/healthz").status_code == 200
    ok = client.post("/v1/jobs", json=job_body(RECORD, policy, "good-after-bad"))
    assert ok.status_code == 202, ok.text


def test_policy_of_another_model_version_is_refused(client, relay, other_model_policy):
    response = client.post("/v1/jobs", json=job_body(RECORD, other_model_policy, "other-model"))
    assert response.status_code == 422
    assert "is for model 0x" in response.json()["detail"]
    assert "version 2, not breast_cancer_lr" in response.json()["detail"]
    assert relay.store.counts()[JobState.QUEUED] == 0


def test_chunked_oversized_body_is_refused(relay, ledger, policy):
    chunk = b" " * 4096

    def body():
        yield _raw(_body(policy))[:-1]
        for _ in range(8):
            yield chunk
        yield b"}"

    auth = bearer(token_for(relay))
    with served(relay) as url:
        response = requests.post(
            url + "/v1/jobs", data=body(), headers={"Content-Type": "application/json", **auth}
        )
        ledger.add_response(response)
        assert response.status_code == 413
        assert "the limit is 16384 bytes" in response.json()["detail"]
        assert requests.get(url + "/healthz", headers=auth).status_code == 200
    assert relay.store.counts()[JobState.QUEUED] == 0


def test_full_queue_answers_429_with_retry_after(client, relay, dev_chain, ledger):
    records = make_records(5, seed=22)
    ledger.add_records(records)
    policies = dev_chain.issue_policies(5)
    bodies = [
        job_body(r, p, f"queue-{i:04d}")
        for i, (r, p) in enumerate(zip(records, policies, strict=True))
    ]
    for body in bodies[:4]:
        assert client.post("/v1/jobs", json=body).status_code == 202
    full = client.post("/v1/jobs", json=bodies[4])
    assert full.status_code == 429
    assert int(full.headers["Retry-After"]) >= 1
    assert full.json()["detail"].startswith("proving queue is full (4 of 4 jobs); retry in ")
    assert relay.store.counts()[JobState.QUEUED] == 4
    # a retry of an accepted job is still answered (idempotency beats the bound)
    again = client.post("/v1/jobs", json=bodies[0])
    assert again.status_code == 202 and again.json()["created"] is False
    assert 'zkcare_relay_rejected_requests_total{status="429"} 1.0' in client.get("/metrics").text


def test_parallel_duplicates_make_one_job(relay, dev_chain, ledger, policy):
    same = job_body(RECORD, policy, "dup-key-000001")
    auth = bearer(token_for(relay))
    with served(relay) as url:
        with ThreadPoolExecutor(16) as pool:
            responses = list(
                pool.map(
                    lambda _: requests.post(url + "/v1/jobs", json=same, headers=auth), range(32)
                )
            )
    for r in responses:
        ledger.add_response(r)
    assert {r.status_code for r in responses} == {202}
    assert len({r.json()["job_id"] for r in responses}) == 1
    assert sum(r.json()["created"] for r in responses) == 1
    assert relay.store.counts()[JobState.QUEUED] == 1


def test_parallel_conflicting_requests_with_one_key(relay, dev_chain, ledger, policy):
    a = job_body(RECORD, policy, "dup-key-000002", record_id="MRN-A")
    b = job_body(RECORD, policy, "dup-key-000002", record_id="MRN-B")
    auth = bearer(token_for(relay))
    with served(relay) as url:
        with ThreadPoolExecutor(16) as pool:
            responses = list(
                pool.map(
                    lambda i: requests.post(url + "/v1/jobs", json=(a, b)[i % 2], headers=auth),
                    range(32),
                )
            )
    for r in responses:
        ledger.add_response(r)
    codes = sorted(r.status_code for r in responses)
    assert set(codes) == {202, 409} and codes.count(202) == 16, codes
    assert len({r.json()["job_id"] for r in responses if r.status_code == 202}) == 1
    assert all(
        "was already used for a different request" in r.json()["detail"]
        for r in responses
        if r.status_code == 409
    )
    assert relay.store.counts()[JobState.QUEUED] == 1


def test_job_lookup_errors(client):
    assert client.get("/v1/jobs/" + "0" * 32).status_code == 404
    assert client.get("/v1/jobs/" + "0" * 32).json()["detail"] == f"no job '{'0' * 32}'"
    bad = client.get("/v1/jobs/not-a-job-id")
    assert bad.status_code == 422 and "job_id: String should match pattern" in bad.json()["detail"]
    assert client.get("/v1/jobs", params={"state": "exploded"}).status_code == 422
    assert client.get("/v1/jobs", params={"limit": 0}).status_code == 422


def test_openapi_schema_is_served_to_clients_and_docs_are_not(client):
    schema = client.get("/openapi.json").json()
    assert {"/v1/jobs", "/v1/jobs/{job_id}", "/healthz", "/metrics"} <= set(schema["paths"])
    request = schema["components"]["schemas"]["JobRequest"]
    features = request["properties"]["features"]
    assert (features["minItems"], features["maxItems"]) == (1, 65_536)  # the card decides
    assert request["additionalProperties"] is False
    assert {"409", "413", "422", "429"} <= set(schema["paths"]["/v1/jobs"]["post"]["responses"])
    status = schema["components"]["schemas"]["JobStatus"]["properties"]
    assert "features" not in status and "salt" not in status
    assert "decision" in status  # a job reports its decision, never the model's score
    assert "outputs" not in status and "logit" not in status
    assert client.get("/docs").status_code == 404  # Swagger UI would load scripts from a CDN
    assert {"401", "403"} <= set(schema["paths"]["/v1/jobs/{job_id}"]["get"]["responses"])


# ---------------------------------------------------------------------------- fuzzing


#: The fuzzed relay's client token (schemathesis copies the schema object per case).
_FUZZ_TOKEN: dict[str, str] = {}


@pytest.fixture
def api_schema(make_relay):
    relay = make_relay(process=False, max_queue=10_000)
    token = token_for(relay)
    schema = schemathesis.openapi.from_asgi(
        "/openapi.json", create_app(relay, manage_relay=False), headers=bearer(token)
    )
    _FUZZ_TOKEN["token"] = token
    return schema


fuzzed = schemathesis.pytest.from_fixture("api_schema")


@fuzzed.parametrize()
@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_fuzz_api_against_its_openapi_schema(case):
    response = case.call(headers=bearer(_FUZZ_TOKEN["token"]))
    case.validate_response(
        response,
        checks=(
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
        ),
    )


def test_one_relay_per_data_directory(relay, relay_models):
    twin = Relay(relay.settings, keys=relay.keys, models=relay_models)
    with pytest.raises(RelayError, match="another relay is running with data_dir"):
        twin.start(process=False)
    twin.store.close()
