"""What issue 4 asks for and Nimbus does not serve yet: provisioned concurrency. The test
drives the operations as Lambda answers them and is expected to fail with the
`404 UnknownOperationException` Nimbus gives today (a strict xfail, see conftest.py): when it
starts passing, move its operations from `not_implemented` to `operations` and regenerate
docs/compatibility.md (`python compat/ops_table.py --write`)."""

from __future__ import annotations

import pytest

not_implemented = pytest.mark.not_implemented


@not_implemented("PutProvisionedConcurrencyConfig", "GetProvisionedConcurrencyConfig",
                 "ListProvisionedConcurrencyConfigs", "DeleteProvisionedConcurrencyConfig",
                 reason="provisioned concurrency (issue 4)")
def test_provisioned_concurrency(functions, lambda_client):
    name = functions.create()["FunctionName"]
    version = lambda_client.publish_version(FunctionName=name)["Version"]
    lambda_client.put_provisioned_concurrency_config(
        FunctionName=name, Qualifier=version, ProvisionedConcurrentExecutions=1
    )
    got = lambda_client.get_provisioned_concurrency_config(FunctionName=name, Qualifier=version)
    assert got["RequestedProvisionedConcurrentExecutions"] == 1
    listed = lambda_client.list_provisioned_concurrency_configs(FunctionName=name)
    assert len(listed["ProvisionedConcurrencyConfigs"]) == 1
    lambda_client.delete_provisioned_concurrency_config(FunctionName=name, Qualifier=version)
