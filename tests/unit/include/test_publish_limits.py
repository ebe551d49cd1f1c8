"""Parameter Store holds 4 KB (Standard) or 8 KB (Advanced) a value, and moto holds any:
mirror checks the size itself before writing, compresses what a shell runs, and refuses
the rest with the size, the limit and the alternative."""

from __future__ import annotations

import boto3
import pytest
from botocore.exceptions import ClientError

from mirror.errors import MirrorError
from mirror.include.publish import SSM_ADVANCED_LIMIT, SSM_STANDARD_LIMIT, fit_for_ssm, publish


def test_a_value_that_fits_the_standard_tier_is_written_as_it_is():
    assert fit_for_ssm("#!/bin/sh\necho hi\n", "script", "ssm:/x") == "#!/bin/sh\necho hi\n"


def test_a_script_over_4_kb_is_compressed_into_the_standard_tier():
    text = "#!/bin/sh\n" + "echo 'mirror: pulling nginx'\n" * 400  # 11 KB, repetitive
    value = fit_for_ssm(text, "script", "ssm:/x")
    assert len(value.encode()) <= SSM_STANDARD_LIMIT and "base64 -d | gunzip -c" in value


def test_a_fragment_between_4_and_8_kb_goes_to_the_advanced_tier_as_it_is():
    text = "version: 0.2\n" + "x" * 5000
    assert fit_for_ssm(text, "buildspec", "ssm:/x") == text


def test_too_large_even_compressed_is_refused_before_anything_is_written(aws):
    import os

    text = "#!/bin/sh\n" + "\n".join(os.urandom(48).hex() for _ in range(200))  # incompressible

    with pytest.raises(MirrorError) as refused:
        publish(text, "ssm:/mirror/pull-script", "script")

    message = str(refused.value)
    assert f"{len(text.encode())} bytes" in message and "compressed" in message
    assert f"{SSM_ADVANCED_LIMIT} bytes" in message and "nothing was written" in message
    assert "s3://" in refused.value.hint
    with pytest.raises(ClientError):
        boto3.client("ssm").get_parameter(Name="/mirror/pull-script")
