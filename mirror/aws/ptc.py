"""ECR pull-through cache: for upstreams ECR can cache, a rule instead of copies.

For `registries.<host>.mode: pull-through-cache` mirror makes sure of, in order:
1. the `ecr-pullthroughcache/...` Secrets Manager secret, for upstreams that need one;
2. the rule `<prefix>/<alias>` -> upstream (created, or its credential updated);
3. a repository creation template, so repositories ECR creates on a cache miss get the
   same settings (mutability, encryption, tags, lifecycle) as the ones mirror creates;
4. that the rule validates (ECR can reach the upstream with the credential).
Optionally each configured tag is then pulled through ECR once (pre-warm), so the first
build does not wait for the cache.
"""

from __future__ import annotations

import json
import re
from typing import Any

import structlog

from mirror.aws.ecr import AwsError, Refusals, call_aws
from mirror.aws.partitions import partition
from mirror.aws.templates import creation_template, ensure_template
from mirror.config.cacheable import CacheableUpstream, ptc_upstream
from mirror.config.model import RepositorySettings
from mirror.oci.credentials import Credentials
from mirror.oci.reference import registry_alias

__all__ = ["PullThroughCache", "managed_secret_name", "ptc_prefix"]

log = structlog.get_logger(__name__)

_PREFIX_RE = re.compile(r"^(?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*$")
SECRET_PREFIX = "ecr-pullthroughcache/"


def managed_secret_name_for(rule_prefix: str) -> str:
    """The `ecr-pullthroughcache/` secret mirror writes for the rule at `rule_prefix`."""
    return SECRET_PREFIX + rule_prefix.replace("/", "-")


def managed_secret_name(repository_prefix: str, host: str) -> str:
    return managed_secret_name_for(ptc_prefix(repository_prefix, host))


def ptc_prefix(repository_prefix: str, host: str) -> str:
    """`<prefix>/<alias>` when ECR's rule prefix rules (2-30 characters) allow it; else
    the alias alone, cut to 30 characters."""
    alias = registry_alias(host)
    wanted = "/".join(p for p in (repository_prefix.strip("/"), alias) if p)
    if 2 <= len(wanted) <= 30 and _PREFIX_RE.match(wanted):
        return wanted
    return alias[:30].rstrip("._-")


class PullThroughCache:
    def __init__(
        self,
        ecr: Any,
        secrets: Any,
        settings: RepositorySettings,
        lifecycle_policy: dict[str, Any] | None,
        refusals: Refusals,
    ) -> None:
        self._ecr = ecr
        self._secrets = secrets
        self._settings = settings
        self._lifecycle = lifecycle_policy
        self._refusals = refusals

    def ensure(
        self,
        host: str,
        prefix: str,
        credentials: Credentials | None,
        secret_arn: str | None = None,
        role_arn: str | None = None,
    ) -> None:
        """Secret, rule, template and validation for one upstream; raises AwsError when
        the rule cannot serve. A template ECR refuses is recorded: the rule still serves,
        with ECR's default settings for the repositories it creates."""
        upstream = ptc_upstream(host)
        assert upstream is not None, "the config loader refuses unsupported upstreams"
        credential_arn = None
        if upstream.needs_credentials:
            credential_arn = self._credential_arn(prefix, credentials, secret_arn)
        self._ensure_rule(prefix, upstream, credential_arn, role_arn)
        template = creation_template(
            self._settings,
            self._lifecycle,
            prefix,
            "PULL_THROUGH_CACHE",
            "Settings for repositories cached by mirror's pull-through rule",
            partition(self._ecr.meta.region_name),
        )
        try:
            ensure_template(self._ecr, template)
        except AwsError as exc:
            self._refusals.record(prefix, "creation_template", exc)
        validation = call_aws(
            self._ecr, "validate_pull_through_cache_rule", ecrRepositoryPrefix=prefix
        )
        if not validation.get("isValid", False):
            raise AwsError(
                f"pull-through cache rule {prefix} -> {upstream.url} does not validate: "
                f"{validation.get('failure', 'no reason given')}",
                code="PTC_INVALID",
                hint="check the upstream credentials in the ecr-pullthroughcache/ secret",
            )
        log.info("pull_through_cache_ready", prefix=prefix, upstream=upstream.url)

    def _credential_arn(
        self, prefix: str, credentials: Credentials | None, secret_arn: str | None
    ) -> str:
        """ECR reads upstream credentials only from secrets named ecr-pullthroughcache/...:
        use such a secret as configured, or keep one in step with the configured ones."""
        if secret_arn and f":secret:{SECRET_PREFIX}" in secret_arn:
            return secret_arn
        if credentials is None:
            raise AwsError(
                f"pull-through cache for {prefix} needs upstream credentials",
                code="PTC_CREDENTIALS",
                hint="add credentials to this registry in the config",
            )
        name = managed_secret_name_for(prefix)
        value = json.dumps({"username": credentials.username, "accessToken": credentials.password})
        try:
            found = call_aws(self._secrets, "describe_secret", SecretId=name)
        except AwsError as exc:
            if exc.code != "ResourceNotFoundException":
                raise
            created = call_aws(
                self._secrets,
                "create_secret",
                Name=name,
                SecretString=value,
                Description="Upstream credentials for an ECR pull-through cache rule (mirror)",
            )
            return str(created["ARN"])
        current = call_aws(self._secrets, "get_secret_value", SecretId=name)
        if current.get("SecretString") != value:
            call_aws(self._secrets, "put_secret_value", SecretId=name, SecretString=value)
            log.info("pull_through_cache_secret_updated", secret=name)
        return str(found["ARN"])

    def _ensure_rule(
        self,
        prefix: str,
        upstream: CacheableUpstream,
        credential_arn: str | None,
        role_arn: str | None = None,
    ) -> None:
        existing = self._rule(prefix)
        if existing is None:
            arguments: dict[str, Any] = {
                "ecrRepositoryPrefix": prefix,
                "upstreamRegistryUrl": upstream.url,
                "upstreamRegistry": upstream.registry,
            }
            if credential_arn:
                arguments["credentialArn"] = credential_arn
            if role_arn:
                arguments["customRoleArn"] = role_arn
            try:
                call_aws(self._ecr, "create_pull_through_cache_rule", **arguments)
                log.info("pull_through_cache_rule_created", prefix=prefix, upstream=upstream.url)
                return
            except AwsError as exc:
                if exc.code != "PullThroughCacheRuleAlreadyExistsException":
                    raise
            existing = self._rule(prefix)  # another run made it meanwhile
            assert existing is not None
        if existing.get("upstreamRegistryUrl") != upstream.url:
            raise AwsError(
                f"the pull-through cache rule {prefix} caches "
                f"{existing.get('upstreamRegistryUrl')}, not {upstream.url}",
                code="PTC_CONFLICT",
                hint="delete that rule, or set another target.repository_prefix",
            )
        changed = {
            key: value
            for key, value in (("credentialArn", credential_arn), ("customRoleArn", role_arn))
            if value and existing.get(key) != value
        }
        if changed:
            call_aws(
                self._ecr, "update_pull_through_cache_rule", ecrRepositoryPrefix=prefix, **changed
            )
            log.info("pull_through_cache_rule_updated", prefix=prefix)

    def _rule(self, prefix: str) -> dict[str, Any] | None:
        try:
            found = call_aws(
                self._ecr, "describe_pull_through_cache_rules", ecrRepositoryPrefixes=[prefix]
            )
        except AwsError as exc:
            if exc.code == "PullThroughCacheRuleNotFoundException":
                return None
            raise
        rules: list[dict[str, Any]] = found.get("pullThroughCacheRules") or []
        return rules[0] if rules else None
