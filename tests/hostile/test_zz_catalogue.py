"""The catalogue as a whole: enough distinct rows, each id unique across the files."""

from __future__ import annotations

import test_algorithms
import test_claims_time
import test_jws_structure
import test_keys_headers
import test_replay
import test_transport
from hostile_support import CATALOGUE

MODULES = (test_transport, test_jws_structure, test_algorithms, test_keys_headers, test_claims_time, test_replay)


def test_catalogue_has_at_least_150_distinct_rows():
    assert all(MODULES)
    ids = list(CATALOGUE)
    assert len(ids) == len(set(ids)) >= 150, len(ids)
    assert sum(case.error is not None for case in CATALOGUE.values()) >= 150
