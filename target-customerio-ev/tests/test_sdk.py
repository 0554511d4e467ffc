"""singer-sdk's standard target tests that make sense for an upsert HTTP API, against the sandbox.

The SDK's sample streams carry no EV_* fields, so the suite's config sends their fields as traits;
their integer ids become userIds (new People in the sandbox). Left out: `multiple_state_messages`,
which expects a STATE per input checkpoint and which the SDK itself leaves out of its default suite
(STATE follows drains; test_resume.py checks the checkpoint guarantees).
"""

from __future__ import annotations

import pytest
from cio_sandbox import Sandbox
from singer_sdk.testing import SuiteConfig, get_target_test_class
from singer_sdk.testing.suites import SingerTestSuite
from singer_sdk.testing.target_tests import (
    TargetArrayData,
    TargetCamelcaseComplexSchema,
    TargetCamelcaseTest,
    TargetCliPrintsTest,
    TargetDuplicateRecords,
    TargetEncodedStringData,
    TargetInvalidSchemaTest,
    TargetNoPrimaryKeys,
    TargetOptionalAttributes,
    TargetPrimaryKeyUpdates,
    TargetRecordBeforeSchemaTest,
    TargetRecordMissingKeyProperty,
    TargetRecordMissingOptionalFields,
    TargetRecordMissingRequiredProperty,
    TargetSchemaNoProperties,
    TargetSchemaUpdates,
    TargetSpecialCharsInAttributes,
)
from target_customerio_ev.target import TargetCustomerIOEV

SDK_TRAITS = [
    "fruits",
    "clientName",
    "metric",
    "info",
    "strings",
    "optional",
    "name",
    "a1",
    "a2",
    "a3",
    "a4",
    "a5",
    "a6",
    "d",
    "object_store",
    "IsDeleted",
    "CreatedDate",
    "DisplayPosition",
    "user_id",
]

# Filled with the sandbox's URL and key by the `resource` fixture, before each runner is built.
CONFIG: dict = {}

target_tests = SingerTestSuite(
    kind="target",
    tests=[
        TargetArrayData,
        TargetCamelcaseComplexSchema,
        TargetCamelcaseTest,
        TargetCliPrintsTest,
        TargetDuplicateRecords,
        TargetEncodedStringData,
        TargetInvalidSchemaTest,
        TargetNoPrimaryKeys,
        TargetOptionalAttributes,
        TargetPrimaryKeyUpdates,
        TargetRecordBeforeSchemaTest,
        TargetRecordMissingKeyProperty,
        TargetRecordMissingOptionalFields,
        TargetRecordMissingRequiredProperty,
        TargetSchemaNoProperties,
        TargetSchemaUpdates,
        TargetSpecialCharsInAttributes,
    ],
)

BaseTargetTests = get_target_test_class(
    TargetCustomerIOEV,
    config=CONFIG,
    custom_suites=[target_tests],
    include_target_tests=False,
    suite_config=SuiteConfig(),
)


class TestTargetCustomerIOEV(BaseTargetTests):
    @pytest.fixture
    def resource(self, small_world_sandbox: Sandbox):
        CONFIG.clear()
        CONFIG.update(small_world_sandbox.target_config(traits=SDK_TRAITS))
        small_world_sandbox.obs.reset_counters()
        yield small_world_sandbox
        # Whatever a suite stream sent must have been accepted: nothing rejected, nothing dropped.
        assert not small_world_sandbox.obs.rejected
        assert small_world_sandbox.obs.snapshot()["dropped_calls"] == 0
