"""AWS::CloudWatch::Alarm for moto's CloudFormation, which skips that type (moto 5.2 warns
"No Moto CloudFormation support"). The resolved properties are checked against botocore's
PutMetricAlarm model, as the real service would, converted the way CloudFormation converts
a Number parameter's text, and handed to moto's own CloudWatch backend: the deployed stack
then has the alarms a test can describe."""

from __future__ import annotations

from typing import Any

import botocore.session
from botocore.validate import validate_parameters
from moto.cloudformation import parsing
from moto.cloudwatch.models import cloudwatch_backends
from moto.core.common_models import CloudFormationModel

__all__ = ["teach_moto_alarms"]

_INTEGERS = ("Period", "EvaluationPeriods", "DatapointsToAlarm")


class _StackAlarm(CloudFormationModel):
    """The stack's handle on an alarm in moto's CloudWatch backend."""

    def __init__(self, name: str, arn: str) -> None:
        self.name = name
        self.arn = arn

    @property
    def physical_resource_id(self) -> str:
        return self.name

    @classmethod
    def has_cfn_attr(cls, attr: str) -> bool:
        return attr == "Arn"

    def get_cfn_attribute(self, attribute_name: str) -> str:
        """Fn::GetAtt ALARM.Arn, as CloudFormation documents it (the dashboard's alarms)."""
        from moto.cloudformation.exceptions import UnformattedGetAttTemplateException

        if attribute_name != "Arn":
            raise UnformattedGetAttTemplateException()
        return self.arn

    @staticmethod
    def cloudformation_name_type() -> str:
        return "AlarmName"

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::CloudWatch::Alarm"

    @classmethod
    def create_from_cloudformation_json(  # type: ignore[override]
        cls,
        resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
        **_: Any,
    ) -> Any:
        properties = dict(cloudformation_json["Properties"])
        properties.setdefault("AlarmName", resource_name)
        for key in _INTEGERS:
            if key in properties:
                properties[key] = int(properties[key])
        properties["Threshold"] = float(properties["Threshold"])
        model = botocore.session.get_session().get_service_model("cloudwatch")
        validate_parameters(properties, model.operation_model("PutMetricAlarm").input_shape)
        backend = cloudwatch_backends[account_id][region_name]
        backend.put_metric_alarm(
            name=properties["AlarmName"],
            namespace=properties["Namespace"],
            metric_name=properties["MetricName"],
            comparison_operator=properties["ComparisonOperator"],
            evaluation_periods=properties["EvaluationPeriods"],
            period=properties["Period"],
            threshold=properties["Threshold"],
            statistic=properties["Statistic"],
            description=properties.get("AlarmDescription", ""),
            dimensions=properties.get("Dimensions", []),
            alarm_actions=properties.get("AlarmActions", []),
            ok_actions=properties.get("OKActions"),
            treat_missing_data=properties.get("TreatMissingData"),
            tags=properties.get("Tags"),
        )
        alarm = backend.alarms[properties["AlarmName"]]
        return cls(properties["AlarmName"], alarm.alarm_arn)


def teach_moto_alarms() -> None:
    parsing.get_model_list.cache_clear()
    parsing.get_model_map.cache_clear()
    assert parsing.get_model_map()["AWS::CloudWatch::Alarm"] is _StackAlarm
