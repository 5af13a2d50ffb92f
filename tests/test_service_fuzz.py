"""An API fuzz run (schemathesis) against the OpenAPI schema: no input produces a 500.

Bounded: a fixed number of generated requests per operation (``OCTAV_FUZZ_EXAMPLES``, default 50), derandomised, on the ASGI app
(no socket), with the layers of a tiny checkpoint in a temporary results directory.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (content_type_conformance, response_schema_conformance,
                                 status_code_conformance)

from service.app import create_app
from service.settings import Settings


def build_app(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz")
    (root / "ckpts").mkdir()
    (root / "results").mkdir()
    rng = np.random.default_rng(0)
    np.savez(root / "ckpts" / "tiny.npz", w=rng.normal(size=(6, 5)).astype(np.float32))
    return create_app(Settings(results_dir=root / "results", default_checkpoint="tiny", layer_bits=[2, 4],
                               layer_curve_points=20, allowed_checkpoint_paths=[root / "ckpts"],
                               max_body_bytes=1 << 20, max_json_body_bytes=1 << 20, max_curve_points=200))


schema = schemathesis.pytest.from_fixture("api_schema")


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory):
    return schemathesis.openapi.from_asgi("/openapi.json", build_app(tmp_path_factory))


# schemathesis's own not_a_server_error counts every 5xx; a 503 (busy, or a registered checkpoint not
# cached here) is documented and carries an explanation, so the test below allows that one only.
CHECKS = [status_code_conformance, content_type_conformance, response_schema_conformance]


@schema.parametrize()
@settings(max_examples=int(os.environ.get("OCTAV_FUZZ_EXAMPLES", "50")), deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.function_scoped_fixture])
def test_no_input_gives_a_server_error(case):
    response = case.call()
    case.validate_response(response, checks=CHECKS)
    assert response.status_code < 500 or response.status_code == 503, response.text
    if response.status_code >= 400:
        assert response.json()["error"], response.text
