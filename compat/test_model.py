"""The contract itself: the pinned botocore carries the reference service model, and
docs/compatibility.md lists exactly the model's operations, with tests behind every claim."""

from __future__ import annotations

import botocore
import pytest
from botocore.loaders import Loader

import ops_table


def test_botocore_carries_the_reference_model():
    if not ops_table.REFERENCE.exists():
        pytest.skip(f"no reference model at {ops_table.REFERENCE}")
    reference, _ = ops_table.load_model(ops_table.REFERENCE)
    bundled = Loader().load_service_model("lambda", "service-2", "2015-03-31")
    assert bundled == reference, (
        f"botocore {botocore.__version__} does not carry the reference model: pin the botocore "
        "whose lambda model is shared/reference/lambda-2015-03-31.service-2.json"
    )


def test_the_table_lists_every_operation_of_the_model():
    model, _ = ops_table.load_model()
    listed = ops_table.table_operations(ops_table.TABLE_DOC.read_text())
    assert sorted(listed) == sorted(model["operations"]), (
        "docs/compatibility.md and the model list different operations; run "
        "`python compat/ops_table.py --write`"
    )
    assert len(listed) == len(set(listed))


def test_the_table_is_up_to_date_and_every_claim_is_tested():
    problems = ops_table.check()
    assert not problems, "\n".join(problems)
