"""The ARN partition of a Region: `aws`, `aws-cn` (China), `aws-us-gov` (GovCloud), and
the isolated ones. An ARN written with `arn:aws:` names nothing in the other partitions,
so every ARN mirror writes takes its partition from the Region, as botocore knows it."""

from __future__ import annotations

import functools

__all__ = ["partition"]


@functools.cache
def partition(region: str) -> str:
    """`aws` for a Region botocore does not know (a new one, or a test's)."""
    import botocore.session
    from botocore.exceptions import UnknownRegionError

    try:
        return str(botocore.session.get_session().get_partition_for_region(region))
    except UnknownRegionError:
        return "aws"
