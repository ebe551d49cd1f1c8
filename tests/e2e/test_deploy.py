"""deploy/mirror.yaml: cfn-lint clean, and deployed into moto's CloudFormation in both
shapes (the daemon service and the scheduled sync), with a task role equal to what
`mirror iam-policy` prints for the config it runs."""

from __future__ import annotations

import ast
import fnmatch
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import boto3
import pytest
from cfnlint.decode import decode

from mirror.aws.iam import COORDINATION_ACTIONS, policy_document
from mirror.config import load_config
from mirror.config.model import DaemonSettings
from mirror.coordination.table import TTL_ATTRIBUTE, Table
from mirror.service.daemon import HEARTBEAT_SECONDS
from tests.support.sns_delivery import delivery_problems

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
        "ImageUri": "123456789012.dkr.ecr.us-east-1.amazonaws.com/tools/mirror:0.2.0",
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


def test_the_service_is_never_left_without_a_daemon_and_stops_within_the_grace_period():
    template, _ = decode(str(TEMPLATE))
    service = template["Resources"]["Service"]["Properties"]
    assert service["DesiredCount"] == {"Ref": "DesiredCount"}
    assert template["Parameters"]["DesiredCount"]["Default"] == 2
    # the new tasks start before the old stop: two or more daemons coordinate anyway
    assert service["DeploymentConfiguration"]["MinimumHealthyPercent"] == 100
    assert service["DeploymentConfiguration"]["MaximumPercent"] == 200
    (definition,) = template["Resources"]["TaskDefinition"]["Properties"]["ContainerDefinitions"]
    assert definition["StopTimeout"] > DaemonSettings().grace_seconds
    assert {"Name": "MIRROR_COORDINATION_TABLE", "Value": {"Ref": "CoordinationTable"}} in (
        definition["Environment"]
    )


def without_coordination(statements: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The statements `mirror iam-policy` prints for a config without `coordination`: the
    stack's own table is granted beside them, whatever the config."""
    return {sid: s for sid, s in by_sid(statements).items() if sid != "Coordination"}


def test_the_coordination_table_is_one_mirror_accepts_with_recovery_and_encryption(aws):
    boto3.client("ssm").put_parameter(
        Name="/mirror/config", Value=EXAMPLE.read_text(), Type="String"
    )
    outputs = deploy("mirror-table", RunAs="service")

    name = outputs["CoordinationTableName"]
    dynamodb = boto3.client("dynamodb")
    described = dynamodb.describe_table(TableName=name)["Table"]
    assert described["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    # moto 5.2's CloudFormation keeps neither a table's SSESpecification, nor its
    # PointInTimeRecoverySpecification nor its TimeToLiveSpecification: the template's,
    # then (cfn-lint checks them against the resource schema).
    template, _ = decode(str(TEMPLATE))
    table = template["Resources"]["CoordinationTable"]["Properties"]
    assert table["SSESpecification"] == {"SSEEnabled": True}
    assert table["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert table["TimeToLiveSpecification"] == {"AttributeName": TTL_ATTRIBUTE, "Enabled": True}
    Table(dynamodb, name).ensure()  # mirror's own schema check takes it as it is
    environment = container(outputs)["environment"]
    assert {"name": "MIRROR_COORDINATION_TABLE", "value": name} in environment
    (grant,) = [s for s in task_role_policy(outputs) if s["Sid"] == "Coordination"]
    assert grant["Resource"] == described["TableArn"]
    assert set(grant["Action"]) == set(COORDINATION_ACTIONS) - {
        "dynamodb:CreateTable",  # the stack made it
        "dynamodb:UpdateTimeToLive",
    }


def test_the_daemon_service_deploys_with_the_task_role_mirror_iam_policy_asks_for(aws):
    boto3.client("s3").create_bucket(Bucket="ops")
    boto3.client("s3").put_object(Bucket="ops", Key="mirror.yaml", Body=EXAMPLE.read_bytes())

    outputs = deploy(
        "mirror", RunAs="service", ConfigBucket="ops", ConfigKey="mirror.yaml",
        UpstreamSecretArns=SECRET,
    )  # fmt: skip

    ecs = boto3.client("ecs")
    (service_arn,) = ecs.list_services(cluster=outputs["ClusterArn"])["serviceArns"]
    (service,) = ecs.describe_services(cluster=outputs["ClusterArn"], services=[service_arn])[
        "services"
    ]
    assert service["desiredCount"] == 2
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
    assert without_coordination(task_role_policy(outputs)) == by_sid(expected)


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
    assert without_coordination(task_role_policy(outputs)) == by_sid(expected)
    roles = boto3.client("iam").list_roles()["Roles"]
    (scheduler,) = [r for r in roles if "SchedulerRole" in r["RoleName"]]
    assert scheduler["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {
        "Service": "scheduler.amazonaws.com"
    }
    run_task, pass_role = inline_policy(scheduler["RoleName"], "run-mirror-sync")
    assert run_task["Action"] == ["ecs:RunTask"]
    assert run_task["Resource"].endswith(":task-definition/mirror-sync:*")
    assert pass_role["Action"] == ["iam:PassRole"]


def created_of_type(stack: str, kind: str) -> list[dict[str, Any]]:
    resources = boto3.client("cloudformation").list_stack_resources(StackName=stack)
    return [r for r in resources["StackResourceSummaries"] if r["ResourceType"] == kind]


def alarms_of(stack: str) -> dict[str, dict[str, Any]]:
    alarms = boto3.client("cloudwatch").describe_alarms()["MetricAlarms"]
    return {a["MetricName"]: a for a in alarms if a["AlarmName"].startswith(stack + "-")}


@pytest.mark.parametrize("shape", ["service", "schedule"])
def test_on_call_gets_alarms_on_the_emf_metrics_and_on_failed_tasks(aws, shape):
    boto3.client("ssm").put_parameter(
        Name="/mirror/config", Value=EXAMPLE.read_text(), Type="String"
    )
    stack = f"mirror-{shape}"

    outputs = deploy(stack, RunAs=shape, UpstreamSecretArns=SECRET, PassIntervalSeconds="3600")

    topic = outputs["AlarmTopicArn"]
    assert topic in boto3.client("sns").list_topics()["Topics"][0].values()
    alarms = alarms_of(stack)
    assert set(alarms) == {"ImagesFailed", "Heartbeat", "ImagesDeferred"}
    for alarm in alarms.values():
        assert alarm["Namespace"] == "mirror"
        assert alarm["Dimensions"] == [{"Name": "Service", "Value": stack}]
        assert alarm["AlarmActions"] == [topic]
    assert alarms["ImagesFailed"]["Period"] == alarms["ImagesDeferred"]["Period"] == 3600
    # The daemon beats every 5 minutes: two empty periods page within about 15 minutes,
    # whatever the pass interval; a scheduled sync beats once a pass.
    heartbeat = alarms["Heartbeat"]
    if shape == "service":
        assert (heartbeat["Period"], heartbeat["EvaluationPeriods"]) == (300, 2)
        assert HEARTBEAT_SECONDS * 2 <= 15 * 60
    else:
        assert (heartbeat["Period"], heartbeat["EvaluationPeriods"]) == (3600, 2)
    assert alarms["Heartbeat"]["TreatMissingData"] == "breaching"
    assert alarms["ImagesFailed"]["EvaluationPeriods"] == 2
    assert alarms["ImagesFailed"]["Statistic"] == "Minimum"
    environment = {e["name"]: e["value"] for e in container(outputs)["environment"]}
    assert environment["MIRROR_METRICS_SERVICE"] == stack  # what the alarms select
    assert environment["MIRROR_METRICS_NAMESPACE"] == "mirror"

    events = boto3.client("events")
    (rule,) = events.list_rules()["Rules"]
    pattern = json.loads(rule["EventPattern"])
    assert pattern["detail-type"] == ["ECS Task State Change"]
    assert pattern["detail"]["clusterArn"] == [outputs["ClusterArn"]]
    assert {"containers": {"exitCode": [{"anything-but": 0}]}} in pattern["detail"]["$or"]
    # A task ECS replaced after failed health checks may exit 0 on SIGTERM: reported too.
    health = {"stoppedReason": [{"prefix": "Task failed container health checks"}]}
    assert health in pattern["detail"]["$or"]
    (target,) = events.list_targets_by_rule(Rule=rule["Name"])["Targets"]
    assert target["Arn"] == topic


@pytest.mark.parametrize("shape", ["service", "schedule"])
def test_every_option_at_once_deploys_private_subnets_an_existing_cluster_and_tags(aws, shape):
    boto3.client("ssm").put_parameter(
        Name="/mirror/config", Value=EXAMPLE.read_text(), Type="String"
    )
    cluster = boto3.client("ecs").create_cluster(clusterName="platform")["cluster"]["clusterArn"]
    topic = boto3.client("sns").create_topic(Name="on-call")["TopicArn"]
    ec2 = boto3.client("ec2")
    route_table = ec2.describe_route_tables()["RouteTables"][0]["RouteTableId"]
    key = "arn:aws:kms:us-east-1:123456789012:key/0b5c2b8e-3f5e-4a36-9d4e-1c1f4b7b0c11"
    other = SECRET.replace("dockerhub-AbCdEf", "ghcr-XyZ123")
    stack = f"all-{shape}"

    outputs = deploy(
        stack, RunAs=shape, ExistingClusterArn=cluster, CreateVpcEndpoints="true",
        RouteTableIds=route_table, UpstreamSecretArns=f"{SECRET},{other}",
        UpstreamSecretsKmsKeyArn=key, AlarmTopicArn=topic, LogRetentionDays="90",
        LogKmsKeyArn=key, TagKey="cost-center", TagValue="platform", MetricsNamespace="ops/mirror",
    )  # fmt: skip

    assert outputs["ClusterArn"] == cluster and outputs["AlarmTopicArn"] == topic
    assert created_of_type(stack, "AWS::ECS::Cluster") == []
    assert created_of_type(stack, "AWS::SNS::Topic") == []
    endpoints = ec2.describe_vpc_endpoints()["VpcEndpoints"]
    services = {e["ServiceName"].rsplit(".", 1)[-1] if "ecr" not in e["ServiceName"] else
                e["ServiceName"].split("us-east-1.")[1] for e in endpoints}  # fmt: skip
    assert services == {
        "ecr.api", "ecr.dkr", "logs", "sts", "secretsmanager", "ssm", "s3", "dynamodb"
    }  # fmt: skip
    gateways = [e for e in endpoints if e["VpcEndpointType"] == "Gateway"]
    assert len(gateways) == 2
    assert all(g["RouteTableIds"] == [route_table] for g in gateways)
    statements = by_sid(task_role_policy(outputs))
    assert statements["UpstreamCredentials"]["Resource"] == [SECRET, other]
    assert statements["UpstreamCredentialsKey"]["Condition"] == {
        "StringEquals": {"kms:ViaService": "secretsmanager.us-east-1.amazonaws.com"}
    }
    (group,) = boto3.client("logs").describe_log_groups(logGroupNamePrefix=outputs["LogGroupName"])[
        "logGroups"
    ]
    assert group["retentionInDays"] == 90
    # moto 5.2 drops a CloudFormation log group's KmsKeyId (it reads `kmsKeyId`): the
    # template's wiring, then.
    template, _ = decode(str(TEMPLATE))
    assert template["Resources"]["LogGroup"]["Properties"]["KmsKeyId"] == {
        "Fn::If": ["HasLogKey", {"Ref": "LogKmsKeyArn"}, {"Ref": "AWS::NoValue"}]
    }
    assert all(a["Namespace"] == "ops/mirror" for a in alarms_of(stack).values())
    role = outputs["TaskRoleArn"].rsplit("/", 1)[-1]
    tags = boto3.client("iam").list_role_tags(RoleName=role)["Tags"]
    assert {"Key": "cost-center", "Value": "platform"} in tags
    logs = boto3.client("logs")
    assert logs.list_tags_for_resource(resourceArn=group["arn"].removesuffix(":*"))["tags"] == {
        "cost-center": "platform"
    }
    # The service and the tasks carry the tags too; moto 5.2 ignores a template's ECS Tags
    # and PropagateTags, so the template says it.
    resources = template["Resources"]
    tag = {"Fn::If": ["HasTag", [{"Key": {"Ref": "TagKey"}, "Value": {"Ref": "TagValue"}}],
                      {"Ref": "AWS::NoValue"}]}  # fmt: skip
    untagged = {r["Type"] for r in resources.values() if r["Properties"].get("Tags") != tag}
    # the types whose CloudFormation schema has no Tags
    assert untagged == {
        "AWS::SQS::QueuePolicy",
        "AWS::SNS::TopicPolicy",
        "AWS::SNS::Subscription",
        "AWS::Scheduler::Schedule",
        "AWS::CloudWatch::Dashboard",
    }
    assert resources["Service"]["Properties"]["PropagateTags"] == "SERVICE"
    ecs_target = resources["Schedule"]["Properties"]["Target"]["EcsParameters"]
    assert ecs_target["PropagateTags"] == "TASK_DEFINITION"


def test_copy_on_miss_gets_an_encrypted_queue_with_a_dead_letter_queue_and_its_senders(aws):
    boto3.client("ssm").put_parameter(
        Name="/mirror/config", Value=EXAMPLE.read_text(), Type="String"
    )
    outputs = deploy(
        "mirror-misses", RunAs="service", EnableOnDemand="true",
        OnDemandOrganizationId="o-a1b2c3d4e5",
    )  # fmt: skip

    sqs = boto3.client("sqs")
    url = outputs["OnDemandQueueUrl"]
    queue = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    redrive = json.loads(queue["RedrivePolicy"])
    assert redrive["maxReceiveCount"] == 5
    dead = sqs.get_queue_url(QueueName=redrive["deadLetterTargetArn"].rsplit(":", 1)[-1])
    assert dead["QueueUrl"] != url
    assert queue["SqsManagedSseEnabled"] == "true"
    # moto 5.2's CloudFormation has no AWS::SQS::QueuePolicy: the template's, then
    template, _ = decode(str(TEMPLATE))
    queue_policy = template["Resources"]["OnDemandQueuePolicy"]
    assert queue_policy["Condition"] == "HasOnDemandOrganization"
    assert queue_policy["Properties"]["Queues"] == [{"Ref": "OnDemandQueue"}]
    (send,) = queue_policy["Properties"]["PolicyDocument"]["Statement"]
    assert send["Principal"] == "*" and send["Effect"] == "Allow"
    assert send["Action"] == "sqs:SendMessage"
    assert send["Condition"] == {
        "StringEquals": {"aws:PrincipalOrgID": {"Ref": "OnDemandOrganizationId"}}
    }
    environment = container(outputs)["environment"]
    assert {"name": "MIRROR_ON_DEMAND_QUEUE_URL", "value": url} in environment
    (grant,) = [s for s in task_role_policy(outputs) if s["Sid"] == "OnDemandQueue"]
    assert grant["Resource"] == queue["QueueArn"]
    # what `mirror iam-policy` asks for a config with on_demand, on this queue
    text = EXAMPLE.read_text() + f"on_demand:\n  queue_url: {url}\n  allow: ['docker.io/*']\n"
    wanted = by_sid(policy_document(load_config(write_temporary(text)))["Statement"])
    assert set(wanted["OnDemandQueue"]["Action"]) == set(grant["Action"])


def write_temporary(text: str) -> str:
    import tempfile

    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as handle:
        handle.write(text)
    return handle.name


def test_the_alarm_topic_its_key_and_its_policy_let_cloudwatch_and_eventbridge_deliver(aws):
    outputs = deploy("mirror-on-call", RunAs="service")

    template, _ = decode(str(TEMPLATE))
    resources = template["Resources"]
    topic = boto3.client("sns").get_topic_attributes(TopicArn=outputs["AlarmTopicArn"])
    key_id = topic["Attributes"]["KmsMasterKeyId"]
    (key,) = created_of_type("mirror-on-call", "AWS::KMS::Key")  # the stack's own key
    assert key_id.endswith(key["PhysicalResourceId"])
    # moto keeps a template key's policy in a form its own KMS API cannot read, and has
    # no AWS::SNS::TopicPolicy: both as the template gives them to CloudFormation.
    key_policy = resources["AlarmTopicKey"]["Properties"]["KeyPolicy"]
    topic_policy = resources["AlarmTopicPolicy"]["Properties"]["PolicyDocument"]
    assert delivery_problems(key_id, key_policy, topic_policy) == []
    # CloudWatch's key grant is scoped to this account's alarms; EventBridge's is not
    # conditioned at all, and its publishing is scoped to this stack's rule instead.
    (cloudwatch,) = [s for s in key_policy["Statement"] if s["Sid"] == "CloudWatchAlarmsPublish"]
    assert set(cloudwatch["Condition"]) == {"StringEquals", "ArnLike"}
    (events,) = [s for s in key_policy["Statement"] if s["Sid"] == "EventBridgePublishes"]
    assert "Condition" not in events
    (rule_grant,) = [s for s in topic_policy["Statement"] if s["Sid"] == "TaskStoppedEvents"]
    assert rule_grant["Condition"] == {
        "ArnEquals": {"aws:SourceArn": {"Fn::GetAtt": ["TaskFailedRule", "Arn"]}}
    }


def test_the_delivery_rules_refuse_the_aws_managed_key_and_a_policy_for_eventbridge_alone():
    """What the template had before: both would have dropped every alarm and event."""
    only_events = {
        "Statement": [
            {"Effect": "Allow", "Principal": {"Service": "events.amazonaws.com"},
             "Action": "sns:Publish", "Resource": "*"}
        ]
    }  # fmt: skip
    assert delivery_problems("arn:aws:kms:us-east-1:1:alias/aws/sns", None, only_events) == [
        "the topic is encrypted with alias/aws/sns",
        "the topic policy does not let cloudwatch.amazonaws.com publish",
    ]
    conditioned = {
        "Statement": [
            {"Effect": "Allow", "Principal": {"Service": service},
             "Action": ["kms:Decrypt", "kms:GenerateDataKey*"], "Resource": "*",
             "Condition": {"StringEquals": {"aws:SourceAccount": "123456789012"}}}
            for service in ("cloudwatch.amazonaws.com", "events.amazonaws.com")
        ]
    }  # fmt: skip
    problems = delivery_problems("key-id", conditioned, only_events)
    assert any("EventBridge's KMS requests do not carry" in p for p in problems)


FEATURES = """\
version: 1
target:
  kind: ecr
  registry: 123456789012.dkr.ecr.us-east-1.amazonaws.com
  repository:
    pull_access: {organization_id: o-a1b2c3d4e5}
  replicate_to: [{region: eu-west-1}]
registries:
  quay.io: {mode: pull-through-cache}
  docker.io:
    mode: pull-through-cache
    credentials: {username_env: HUB_USER, password_env: HUB_TOKEN}
images:
  - nginx:1.27
  - quay.io/prometheus/node-exporter:v1.8.2
"""


def listed(value: str | list[str]) -> list[str]:
    return value if isinstance(value, list) else [value]


def granted(statements: list[dict[str, Any]], action: str, resource: str) -> bool:
    """Whether an Allow statement gives `action` on `resource` (IAM's wildcards)."""
    return any(
        any(fnmatch.fnmatchcase(action, a) for a in listed(s["Action"]))
        and any(fnmatch.fnmatchcase(resource, r) for r in listed(s["Resource"]))
        for s in statements
    )


def test_the_task_role_grants_what_mirror_iam_policy_asks_for_every_feature_turned_on(
    aws, monkeypatch
):
    monkeypatch.setenv("HUB_USER", "ci-bot")
    monkeypatch.setenv("HUB_TOKEN", "dckr_pat_x")
    boto3.client("ssm").put_parameter(Name="/mirror/config", Value=FEATURES, Type="String")
    boundary = "arn:aws:iam::123456789012:policy/platform-boundary"

    outputs = deploy(
        "mirror-features", RunAs="service", EnablePullAccess="true", EnableReplication="true",
        EnablePullThroughCache="true", PermissionsBoundaryArn=boundary,
        EnableExecuteCommand="true", ContainerInsights="disabled", CreateVpcEndpoints="true",
        EndpointsPrivateDns="false",
        RouteTableIds=boto3.client("ec2").describe_route_tables()["RouteTables"][0]["RouteTableId"],
    )  # fmt: skip

    statements = task_role_policy(outputs)
    wanted = policy_document(load_config("ssm:/mirror/config"))["Statement"]
    missing = [
        (action, resource)
        for statement in wanted
        for action in listed(statement["Action"])
        for resource in listed(statement["Resource"])
        if not granted(statements, action, resource)
    ]
    assert missing == []
    role = boto3.client("iam").get_role(RoleName=outputs["TaskRoleArn"].rsplit("/", 1)[-1])
    assert role["Role"]["PermissionsBoundary"]["PermissionsBoundaryArn"] == boundary
    assert {s["Sid"] for s in statements} >= {"ExecuteCommand", "MirrorReplicas", "PullAccess"}
    endpoints = boto3.client("ec2").describe_vpc_endpoints()["VpcEndpoints"]
    interfaces = [e for e in endpoints if e["VpcEndpointType"] == "Interface"]
    assert interfaces and not any(e["PrivateDnsEnabled"] for e in interfaces)
    # moto keeps neither the cluster's settings nor the service's ECS Exec flag from a
    # template: the template's wiring, then.
    template, _ = decode(str(TEMPLATE))
    resources = template["Resources"]
    assert resources["Cluster"]["Properties"]["ClusterSettings"] == [
        {"Name": "containerInsights", "Value": {"Ref": "ContainerInsights"}}
    ]
    assert resources["Service"]["Properties"]["EnableExecuteCommand"] == {
        "Fn::If": ["HasExecuteCommand", True, False]
    }
    assert resources["LogGroup"]["DeletionPolicy"] == "Retain"


def test_without_features_the_task_role_grants_none_of_their_actions(aws):
    boto3.client("ssm").put_parameter(
        Name="/mirror/config", Value=EXAMPLE.read_text(), Type="String"
    )
    outputs = deploy("mirror-plain", RunAs="schedule")

    sids = {s["Sid"] for s in task_role_policy(outputs)}
    assert not sids & {"PullAccess", "Replication", "MirrorReplicas", "PullThroughCacheRules",
                       "PullThroughCacheSecrets", "ExecuteCommand"}  # fmt: skip


def emitted_metric_names() -> set[str]:
    """Every metric name mirror's EMF documents carry, from a pass with a registry."""
    from mirror.engine.report import CredentialUsage, PassReport, RegistryUsage
    from mirror.service.emf import EmfSettings, heartbeat, pass_documents

    report = PassReport(command="sync")
    report.registries = [RegistryUsage("docker.io", [CredentialUsage("anonymous", 1, 100, 9)])]
    settings = EmfSettings(namespace="mirror", service="mirror")
    names: set[str] = set()
    for document in [*pass_documents(settings, report), heartbeat(settings)]:
        for directive in document["_aws"]["CloudWatchMetrics"]:
            names |= {m["Name"] for m in directive["Metrics"]}
    return names


def test_the_dashboard_draws_the_metrics_mirror_emits_and_the_stacks_alarms(aws):
    outputs = deploy("mirror-dash", RunAs="service", PassIntervalSeconds="3600")

    name = outputs["DashboardUrl"].rsplit("name=", 1)[1]
    body = json.loads(boto3.client("cloudwatch").get_dashboard(DashboardName=name)["DashboardBody"])
    widgets = body["widgets"]
    for widget in widgets:
        assert widget["type"] in {"metric", "alarm", "text"}
        assert widget["x"] >= 0 and widget["x"] + widget["width"] <= 24 and widget["height"] > 0
    drawn: set[str] = set()
    for widget in [w for w in widgets if w["type"] == "metric"]:
        properties = widget["properties"]
        assert properties["region"] == "us-east-1" and properties["title"]
        for line in properties["metrics"]:
            if isinstance(line[0], dict):  # a SEARCH expression
                expression = line[0]["expression"]
                assert '"mirror"' in expression and 'Service="mirror-dash"' in expression
                drawn.add(expression.split('MetricName="', 1)[1].split('"', 1)[0])
            else:
                namespace, metric, dimension, value = line
                assert (namespace, dimension, value) == ("mirror", "Service", "mirror-dash")
                drawn.add(metric)
    assert drawn <= emitted_metric_names()
    assert {"UpstreamPulls", "QuotaRemaining", "ImagesCopied", "ImagesSkipped", "ImagesFailed",
            "ImagesDeferred", "PassSeconds", "BytesCopied", "Heartbeat"} <= drawn  # fmt: skip
    (alarms,) = [w for w in widgets if w["type"] == "alarm"]
    stack_alarms = {a["AlarmArn"] for a in boto3.client("cloudwatch").describe_alarms()[
        "MetricAlarms"] if a["AlarmName"].startswith("mirror-dash-")}  # fmt: skip
    assert set(alarms["properties"]["alarms"]) == stack_alarms
