"""deploy/mirror.yaml: cfn-lint clean, and deployed into moto's CloudFormation in both
shapes (the daemon service and the scheduled sync), with a task role equal to what
`mirror iam-policy` prints for the config it runs."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path
from typing import Any

import boto3
import pytest
from cfnlint.decode import decode

from mirror.config import load_config
from mirror.config.model import DaemonSettings
from mirror.iam import policy_document

pytestmark = [
    pytest.mark.e2e,
    # moto cannot create AWS::Scheduler::Schedule and skips it; cfn-lint checks it against
    # the resource schema instead.
    pytest.mark.filterwarnings("ignore:Tried to parse AWS"),
]

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "deploy/mirror.yaml"
EXAMPLE = ROOT / "config/ecs.yaml"
SECRET = "arn:aws:secretsmanager:us-east-1:123456789012:secret:mirror/dockerhub-AbCdEf"


def deploy(name: str, **parameters: str) -> dict[str, str]:
    """Create the stack; returns its outputs."""
    subnets = boto3.client("ec2").describe_subnets()["Subnets"]
    given = {
        "ImageUri": "123456789012.dkr.ecr.us-east-1.amazonaws.com/tools/mirror:0.1.0",
        "VpcId": subnets[0]["VpcId"],
        "Subnets": ",".join(s["SubnetId"] for s in subnets[:2]),
        **parameters,
    }
    cfn = boto3.client("cloudformation")
    cfn.create_stack(
        StackName=name,
        TemplateBody=TEMPLATE.read_text(),
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in given.items()],
        Capabilities=["CAPABILITY_IAM"],
    )
    (stack,) = cfn.describe_stacks(StackName=name)["Stacks"]
    assert stack["StackStatus"] == "CREATE_COMPLETE", stack.get("StackStatusReason")
    return {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]}


def container(outputs: dict[str, str]) -> dict[str, Any]:
    described = boto3.client("ecs").describe_task_definition(
        taskDefinition=outputs["TaskDefinitionArn"]
    )
    (definition,) = described["taskDefinition"]["containerDefinitions"]
    return dict(definition)


def task_role_policy(outputs: dict[str, str]) -> list[dict[str, Any]]:
    return inline_policy(outputs["TaskRoleArn"].rsplit("/", 1)[-1], "mirror")


def inline_policy(role: str, name: str) -> list[dict[str, Any]]:
    document = boto3.client("iam").get_role_policy(RoleName=role, PolicyName=name)
    policy = document["PolicyDocument"]
    if isinstance(policy, str):  # moto keeps a CloudFormation role's inline policy as repr()
        policy = ast.literal_eval(policy)
    # CloudFormation drops an AWS::NoValue list item; moto leaves it as null.
    return [statement for statement in policy["Statement"] if statement is not None]


def by_sid(statements: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {s["Sid"]: s for s in statements}


def test_the_template_is_cfn_lint_clean():
    linted = subprocess.run(
        [Path(sys.executable).parent / "cfn-lint", TEMPLATE], capture_output=True, text=True
    )
    assert linted.returncode == 0, linted.stdout + linted.stderr


def test_the_service_never_runs_two_daemons_and_stops_within_the_grace_period():
    template, _ = decode(str(TEMPLATE))
    service = template["Resources"]["Service"]["Properties"]
    assert service["DesiredCount"] == 1
    assert service["DeploymentConfiguration"]["MinimumHealthyPercent"] == 0
    assert service["DeploymentConfiguration"]["MaximumPercent"] == 100
    (definition,) = template["Resources"]["TaskDefinition"]["Properties"]["ContainerDefinitions"]
    assert definition["StopTimeout"] > DaemonSettings().grace_seconds


def test_the_daemon_service_deploys_with_the_task_role_mirror_iam_policy_asks_for(aws):
    boto3.client("s3").create_bucket(Bucket="ops")
    boto3.client("s3").put_object(Bucket="ops", Key="mirror.yaml", Body=EXAMPLE.read_bytes())

    outputs = deploy(
        "mirror", RunAs="service", ConfigBucket="ops", ConfigKey="mirror.yaml",
        DockerHubSecretArn=SECRET,
    )  # fmt: skip

    ecs = boto3.client("ecs")
    (service_arn,) = ecs.list_services(cluster=outputs["ClusterArn"])["serviceArns"]
    (service,) = ecs.describe_services(cluster=outputs["ClusterArn"], services=[service_arn])[
        "services"
    ]
    assert service["desiredCount"] == 1
    daemon = container(outputs)
    assert daemon["command"] == ["daemon"]
    assert {"name": "MIRROR_CONFIG", "value": "s3://ops/mirror.yaml"} in daemon["environment"]
    assert daemon["healthCheck"]["command"] == ["CMD", "mirror", "health"]
    assert daemon["logConfiguration"]["options"]["awslogs-group"] == outputs["LogGroupName"]
    (group,) = boto3.client("logs").describe_log_groups(logGroupNamePrefix=outputs["LogGroupName"])[
        "logGroups"
    ]
    assert group["retentionInDays"] == 30

    expected = policy_document(load_config("s3://ops/mirror.yaml"))["Statement"]
    assert by_sid(task_role_policy(outputs)) == by_sid(expected)


def test_the_scheduled_sync_deploys_without_a_service_or_a_health_check(aws):
    example = EXAMPLE.read_text()
    anonymous = example[: example.index("registries:")] + example[example.index("daemon:") :]
    boto3.client("ssm").put_parameter(Name="/mirror/config", Value=anonymous, Type="String")

    outputs = deploy("mirror-sync", RunAs="schedule")

    assert boto3.client("ecs").list_services(cluster=outputs["ClusterArn"])["serviceArns"] == []
    sync = container(outputs)
    assert sync["command"][0] == "sync"
    assert "healthCheck" not in sync
    assert {"name": "MIRROR_CONFIG", "value": "ssm:/mirror/config"} in sync["environment"]
    expected = policy_document(load_config("ssm:/mirror/config"))["Statement"]
    assert by_sid(task_role_policy(outputs)) == by_sid(expected)
    roles = boto3.client("iam").list_roles()["Roles"]
    (scheduler,) = [r for r in roles if "SchedulerRole" in r["RoleName"]]
    assert scheduler["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {
        "Service": "scheduler.amazonaws.com"
    }
    run_task, pass_role = inline_policy(scheduler["RoleName"], "run-mirror-sync")
    assert run_task["Action"] == ["ecs:RunTask"]
    assert run_task["Resource"].endswith(":task-definition/mirror-sync:*")
    assert pass_role["Action"] == ["iam:PassRole"]
