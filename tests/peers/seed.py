#!/usr/bin/env python3
"""Seeds a moto server with tagged AWS resources for the inventory tests and the demo.

Usage:
    .venv/bin/python tests/peers/seed.py --endpoint http://127.0.0.1:PORT [--verify] [--workers N]

Reads a JSON spec on stdin:

    {"resources": [{"key": "web", "account": "123456789012", "region": "us-east-1",
                    "type": "ec2:instance", "tags": {"ephemera:project": "web"},
                    "terminated": false, "count": 1}]}

Only `key` and `type` are required; `account` defaults to moto's default account
123456789012, `region` to us-east-1, `tags` to {} (created untagged), `terminated` to false
(ec2:instance only: terminate right after launch) and `count` to 1 (that many identical
resources, names suffixed). Unknown fields are an error. Options for the reaper's tests, all
off by default:
- `in_use` (ec2:volume, ec2:security-group, ec2:network-interface, ec2:elastic-ip; for
  elasticloadbalancing:targetgroup and eks:cluster see below): make a
  fresh untagged running instance use it — the volume attached to it, the group its security
  group (plus a fresh untagged unattached network interface in the group), the interface
  attached to it as device 1, the address associated with it. Their ARNs come back in
  `used_by`.
- `objects` (s3:bucket): that many plain objects `obj-N`, put before versioning is enabled.
- `image_id` (ec2:instance, ec2:launch-template): the AMI to launch instead of the default
  (moto checks no AMI exists, so an id it never registered stands for a deregistered one).
- `versioned` (s3:bucket): then enable versioning and add three versions of `versioned` and
  one version plus a delete marker of `deleted`.

Types: ec2:instance, ec2:volume, ec2:snapshot, ec2:image (CreateImage of a fresh untagged
instance, which is terminated afterwards; tags go on the image only), ec2:security-group (in
the default VPC), ec2:network-interface (in the default subnet of zone `a`), ec2:elastic-ip,
ec2:key-pair, ec2:launch-template, s3:bucket, sqs:queue, dynamodb:table, sns:topic,
logs:log-group, lambda:function; and the VPC family, each member made alone, what it needs
untagged around it, one fresh untagged VPC (10.0.0.0/16) per entry: ec2:vpc (itself, nothing
else), ec2:subnet, ec2:route-table (associated with an untagged subnet of its VPC),
ec2:internet-gateway (attached to its VPC), ec2:natgateway (in an untagged subnet, with an
untagged Elastic IP), ec2:vpc-endpoint (gateway endpoint for S3, no route tables),
ec2:egress-only-internet-gateway, ec2:network-acl (no subnets), ec2:dhcp-options (used by no
VPC, so no VPC is made) and ec2:vpc-peering-connection (between two untagged VPCs). The VPC
family is tagged with CreateTags after creation. Controllers and their kin, each with what it
needs untagged around it: autoscaling:autoScalingGroup (empty, from a launch template),
autoscaling:launchConfiguration (never tagged: AWS keeps no tags on one),
elasticloadbalancing:loadbalancer (an ALB over two subnets of a fresh VPC),
elasticloadbalancing:targetgroup (`in_use`: an ALB's listener forwards to it), ecs:cluster,
ecs:service (desired 0, in a cluster of its own), ecs:task-definition, eks:cluster (`in_use`:
an untagged node group and Fargate profile in it),
eks:nodegroup (in a cluster of its own) and cloudformation:stack (one member, an SQS queue).

Prints one JSON document on stdout, one entry per created resource, in spec order:

    {"resources": [{"key": "web", "arn": "arn:aws:ec2:us-east-1:123456789012:instance/i-...",
                    "account": "123456789012", "region": "us-east-1",
                    "type": "ec2:instance", "id": "i-..."}]}

`arn` is the ARN exactly as moto's Resource Groups Tagging API lists it; `id` is the
resource's own identifier (instance/volume/snapshot/AMI/group/interface/allocation/key pair/
launch template id, or the bucket, queue, table, topic, log group or function name). moto
5.2.5's GetResources never lists elastic IPs, key pairs, launch templates, VPC endpoints,
egress-only internet gateways, network ACLs or DHCP option sets; for those `arn` is the form
AWS's tagging API uses (`elastic-ip/eipalloc-…`, `key-pair/key-…`, `launch-template/lt-…`,
`vpc-endpoint/vpce-…`, …). NAT gateways are `natgateway/nat-…`, as AWS and moto spell them. Entries may carry two more fields: `used_by` (see `in_use`) and, for
ec2:image, `snapshot_id` (the snapshot backing the AMI, untagged). With `--verify`, every
tagged seeded ARN of a listed type is looked up through GetResources in its account and region
before printing, and a missing one is an error.

Any failure exits with status 1 and a message on stderr naming the resource key; a usage or
spec error exits with status 2.

Safety: clients only ever talk to `--endpoint` with the static dummy credentials
testing/testing (or the credentials moto's STS hands out for another account). The AWS_*
environment, shared config and credentials files are ignored, so no profile, real
credentials or instance metadata can leak in.

Besides what the spec asks for, moto ends up holding: an untagged root volume per running
instance (moto deletes it on termination); the untagged instances, interfaces and backing
snapshots of `in_use` and ec2:image (above); one IAM role `seed-lambda-<run id>` per account
with Lambda functions (functions need a role that exists); no snapshot source volume (one
untagged volume per account and region is created, snapshotted and deleted). Names are
`seed-<sanitized key>-<run id>-<serial>`, so repeated runs against one server never collide.
None of these extras is tagged, so GetResources does not list them.

Seeding is not transactional: after a failure, whatever was created before it stays in moto
(reset moto, or start a fresh one, to begin again).

Speed: moto is the bottleneck (one Python process, a few ms per request), so the tool cuts
requests and keeps the per-request cost flat:
- ec2:instance with a count is one RunInstances call per 500 (plus one TerminateInstances per
  1000 when `terminated`);
- ec2:volume and ec2:snapshot are created untagged and then tagged with one CreateTags call per
  1000 ids. Tagging on create is quadratic in moto: every EC2 response renders each resource's
  tags by scanning all tags of that account and region, so the 10,000th tagged CreateVolume
  cost about 3x the first;
- every other type is one call per resource (plus PutBucketTagging per tagged bucket);
- calls run on a pool of `--workers` threads (default 8), each with its own boto3 clients.
Measured on a busy 2-core machine, moto 5.2.5, tagged volumes: 1,000 in 5-6 s, 10,000 in
36-47 s, whatever the worker count (1, 2 or 8 all land in that range; the server is the limit).
Tagging on create instead took 64-72 s for 10,000. With `--verify`, GetResources over 10,000
volumes adds about 1.5 s. Beware DescribeVolumes on such a seed: moto ignores MaxResults and
renders all 10,000 volumes' tags the quadratic way (26 s for one call).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import secrets
import sys
import threading
import zipfile
from collections.abc import Iterator
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable

# Before boto3 is imported: nothing from the environment may steer the clients.
for _name in [n for n in os.environ if n.startswith("AWS_")]:
    del os.environ[_name]
os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
os.environ["AWS_CONFIG_FILE"] = os.devnull
os.environ["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull

import boto3  # noqa: E402
import botocore.config  # noqa: E402

DEFAULT_ACCOUNT = "123456789012"
DEFAULT_REGION = "us-east-1"
DUMMY_KEY = "testing"
DUMMY_SECRET = "testing"
# One of the AMIs moto ships in every region.
AMI = "ami-12c6146b"
INSTANCE_TYPE = "t2.micro"
# RunInstances launches this many per call at most.
INSTANCE_BATCH = 500
# TerminateInstances and CreateTags take this many ids per call at most.
ID_BATCH = 1000

TYPES = (
    "ec2:instance",
    "ec2:volume",
    "ec2:snapshot",
    "ec2:image",
    "ec2:security-group",
    "ec2:network-interface",
    "ec2:elastic-ip",
    "ec2:key-pair",
    "ec2:launch-template",
    "ec2:vpc",
    "ec2:subnet",
    "ec2:route-table",
    "ec2:internet-gateway",
    "ec2:natgateway",
    "ec2:vpc-endpoint",
    "ec2:egress-only-internet-gateway",
    "ec2:network-acl",
    "ec2:dhcp-options",
    "ec2:vpc-peering-connection",
    "s3:bucket",
    "sqs:queue",
    "dynamodb:table",
    "sns:topic",
    "logs:log-group",
    "lambda:function",
    "ecr:repository",
    "secretsmanager:secret",
    "kms:key",
    "rds:db",
    "rds:cluster",
    "rds:snapshot",
    "rds:cluster-snapshot",
    "rds:subgrp",
    "iam:role",
    "iam:instance-profile",
    "iam:policy",
    "iam:oidc-provider",
    "iam:user",
    "iam:access-key",
    "elasticache:cluster",
    "elasticache:replicationgroup",
    "elasticache:subnetgroup",
    "autoscaling:autoScalingGroup",
    "autoscaling:launchConfiguration",
    "elasticloadbalancing:loadbalancer",
    "elasticloadbalancing:targetgroup",
    "ecs:cluster",
    "ecs:service",
    "ecs:task-definition",
    "eks:cluster",
    "eks:nodegroup",
    "cloudformation:stack",
)
FIELDS = {
    "key", "account", "region", "type", "tags", "terminated", "count",
    "in_use", "objects", "versioned", "image_id",
}
IN_USE_TYPES = {
    "ec2:volume",
    "ec2:security-group",
    "ec2:network-interface",
    "ec2:elastic-ip",
    # A role with a managed and an inline policy in an instance profile; a profile holding a
    # role; a policy with a second, non-default version.
    "iam:role",
    "iam:instance-profile",
    "iam:policy",
    # A user with a console password, an inline and a managed policy, a group, an SSH key and
    # a signing certificate (and no access key: those are deleted on their own first).
    "iam:user",
    "ec2:volume", "ec2:security-group", "ec2:network-interface", "ec2:elastic-ip",
    "elasticloadbalancing:targetgroup", "eks:cluster",
}
# Types moto 5.2.5's GetResources never lists (`--verify` skips them).
UNLISTED = {
    "ec2:elastic-ip",
    "ec2:key-pair",
    "ec2:launch-template",
    "ec2:vpc-endpoint",
    "ec2:egress-only-internet-gateway",
    "ec2:network-acl",
    "ec2:dhcp-options",
    "ecr:repository",
    "rds:subgrp",
    "iam:role",
    "iam:instance-profile",
    "iam:policy",
    "iam:oidc-provider",
    "iam:user",
    "iam:access-key",
    "autoscaling:autoScalingGroup",
    "autoscaling:launchConfiguration",
    "eks:cluster",
    "eks:nodegroup",
}
# Created untagged, then tagged in batches (see `Seeder.tag_later`).
TAG_LATER = {"ec2:volume", "ec2:snapshot"}
# Per-type limits on the generated names.
NAME_LIMITS = {
    "s3:bucket": 63,
    "sqs:queue": 80,
    "dynamodb:table": 255,
    "sns:topic": 256,
    "logs:log-group": 512,
    "lambda:function": 64,
    "ec2:security-group": 255,
    "ec2:key-pair": 255,
    "ec2:launch-template": 128,
    "ec2:image": 128,
    "ecr:repository": 256,
    "secretsmanager:secret": 256,
    "rds:db": 63,
    "rds:cluster": 63,
    "rds:snapshot": 63,
    "rds:cluster-snapshot": 63,
    "rds:subgrp": 255,
    "iam:role": 64,
    "iam:instance-profile": 128,
    "iam:policy": 128,
    "iam:oidc-provider": 200,
    "iam:user": 64,
    "iam:access-key": 64,
    "elasticache:cluster": 40,
    "elasticache:replicationgroup": 40,
    "elasticache:subnetgroup": 255,
    "autoscaling:autoScalingGroup": 255,
    "autoscaling:launchConfiguration": 255,
    "elasticloadbalancing:loadbalancer": 32,
    "elasticloadbalancing:targetgroup": 32,
    "ecs:cluster": 255,
    "ecs:service": 255,
    "ecs:task-definition": 255,
    "eks:cluster": 100,
    "eks:nodegroup": 63,
    "cloudformation:stack": 128,
}
# A stack's one member: a queue CloudFormation creates (and deletes with the stack).
STACK_TEMPLATE = json.dumps(
    {"Resources": {"Member": {"Type": "AWS::SQS::Queue", "Properties": {}}}}
)
# moto checks neither role exists: EKS's service and node roles are only names to it.
EKS_ROLE = "arn:aws:iam::123456789012:role/seed-eks"


class SeedError(Exception):
    """A failure while seeding one resource; the message names the resource key."""


class SpecError(Exception):
    """The spec on stdin is malformed."""


@dataclass(frozen=True)
class Entry:
    index: int
    key: str
    account: str
    region: str
    kind: str
    tags: dict[str, str]
    terminated: bool
    count: int
    in_use: bool = False
    objects: int = 0
    versioned: bool = False
    # ec2:instance and ec2:launch-template: the AMI to launch (moto does not check it exists).
    image_id: str | None = None


SEED_SSH_KEY = (
    "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQDseed seed@example.com"
)


def self_signed_pem() -> str:
    """A throwaway self-signed certificate (moto parses a signing certificate's body)."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "seed")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode()


@dataclass
class Created:
    arn: str
    id: str
    # ARNs of what was made to use it (`in_use`).
    used_by: list[str] = field(default_factory=list)
    # ec2:image: the snapshot backing the AMI.
    snapshot_id: str | None = None


@dataclass
class Result:
    entry: Entry
    # Filled slot by slot (index = the copy's ordinal), possibly from several threads.
    created: list[Created | None] = field(default_factory=list)


def partition(region: str) -> str:
    if region.startswith("cn-"):
        return "aws-cn"
    if region.startswith("us-gov-"):
        return "aws-us-gov"
    return "aws"


def parse_spec(raw: str) -> list[Entry]:
    try:
        doc = json.loads(raw)
    except json.JSONDecodeError as e:
        raise SpecError(f"spec is not JSON: {e}") from None
    if not isinstance(doc, dict) or set(doc) != {"resources"}:
        raise SpecError('spec must be an object with exactly one field, "resources"')
    items = doc["resources"]
    if not isinstance(items, list):
        raise SpecError('"resources" must be a list')
    entries = []
    for index, item in enumerate(items):
        where = f"resources[{index}]"
        if not isinstance(item, dict):
            raise SpecError(f"{where} must be an object")
        key = item.get("key")
        if not isinstance(key, str) or not key:
            raise SpecError(f'{where}: "key" must be a non-empty string')
        where = f"{where} (key {key!r})"
        unknown = sorted(set(item) - FIELDS)
        if unknown:
            raise SpecError(f"{where}: unknown fields {unknown}")
        kind = item.get("type")
        if kind not in TYPES:
            raise SpecError(f'{where}: "type" must be one of {list(TYPES)}, got {kind!r}')
        account = item.get("account", DEFAULT_ACCOUNT)
        if not isinstance(account, str) or not re.fullmatch(r"\d{12}", account):
            raise SpecError(f'{where}: "account" must be 12 digits, got {account!r}')
        region = item.get("region", DEFAULT_REGION)
        if not isinstance(region, str) or not re.fullmatch(r"[a-z]{2}(-[a-z]+)+-\d", region):
            raise SpecError(f'{where}: "region" must look like us-east-1, got {region!r}')
        tags = item.get("tags", {})
        if not isinstance(tags, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in tags.items()
        ):
            raise SpecError(f'{where}: "tags" must map strings to strings')
        terminated = item.get("terminated", False)
        if not isinstance(terminated, bool):
            raise SpecError(f'{where}: "terminated" must be a boolean')
        if terminated and kind != "ec2:instance":
            raise SpecError(f'{where}: "terminated" applies to ec2:instance only')
        count = item.get("count", 1)
        if not isinstance(count, int) or isinstance(count, bool) or count < 1:
            raise SpecError(f'{where}: "count" must be a positive integer, got {count!r}')
        in_use = item.get("in_use", False)
        if not isinstance(in_use, bool):
            raise SpecError(f'{where}: "in_use" must be a boolean')
        if in_use and kind not in IN_USE_TYPES:
            raise SpecError(f'{where}: "in_use" applies to {sorted(IN_USE_TYPES)} only')
        objects = item.get("objects", 0)
        if not isinstance(objects, int) or isinstance(objects, bool) or objects < 0:
            raise SpecError(f'{where}: "objects" must be a non-negative integer')
        versioned = item.get("versioned", False)
        if not isinstance(versioned, bool):
            raise SpecError(f'{where}: "versioned" must be a boolean')
        if (objects or versioned) and kind != "s3:bucket":
            raise SpecError(f'{where}: "objects" and "versioned" apply to s3:bucket only')
        image_id = item.get("image_id")
        if image_id is not None and (
            not isinstance(image_id, str) or not image_id.startswith("ami-")
        ):
            raise SpecError(f'{where}: "image_id" must be an AMI id (ami-...)')
        if image_id is not None and kind not in ("ec2:instance", "ec2:launch-template"):
            raise SpecError(f'{where}: "image_id" applies to ec2:instance and ec2:launch-template only')
        entries.append(
            Entry(
                index, key, account, region, kind, dict(tags), terminated, count,
                in_use, objects, versioned, image_id,
            )
        )
    return entries


class Clients:
    """boto3 clients per thread, (account, region, service); credentials per account."""

    def __init__(self, endpoint: str):
        self.endpoint = endpoint
        self.config = botocore.config.Config(
            retries={"mode": "standard", "max_attempts": 3},
            connect_timeout=5,
            read_timeout=120,
        )
        self._local = threading.local()
        self._lock = threading.Lock()
        self._credentials: dict[str, tuple[str, str, str | None]] = {}

    def credentials(self, account: str) -> tuple[str, str, str | None]:
        with self._lock:
            if account not in self._credentials:
                self._credentials[account] = self._credentials_for(account)
            return self._credentials[account]

    def _credentials_for(self, account: str) -> tuple[str, str, str | None]:
        base = self._session(DUMMY_KEY, DUMMY_SECRET, None, DEFAULT_REGION)
        sts = base.client("sts", endpoint_url=self.endpoint, config=self.config)
        if account == DEFAULT_ACCOUNT:
            creds = (DUMMY_KEY, DUMMY_SECRET, None)
        else:
            # moto puts everything made with these credentials into `account`.
            assumed = sts.assume_role(
                RoleArn=f"arn:aws:iam::{account}:role/seed", RoleSessionName="seed"
            )["Credentials"]
            creds = (
                assumed["AccessKeyId"],
                assumed["SecretAccessKey"],
                assumed["SessionToken"],
            )
            sts = self._session(*creds, DEFAULT_REGION).client(
                "sts", endpoint_url=self.endpoint, config=self.config
            )
        # A server started with another MOTO_ACCOUNT_ID would silently seed elsewhere.
        actual = sts.get_caller_identity()["Account"]
        if actual != account:
            raise RuntimeError(
                f"credentials for account {account} act as account {actual} "
                "(is moto running with MOTO_ACCOUNT_ID set?)"
            )
        return creds

    @staticmethod
    def _session(key: str, secret: str, token: str | None, region: str) -> Any:
        return boto3.session.Session(
            aws_access_key_id=key,
            aws_secret_access_key=secret,
            aws_session_token=token,
            region_name=region,
        )

    def client(self, service: str, account: str, region: str) -> Any:
        cache = getattr(self._local, "clients", None)
        if cache is None:
            cache = self._local.clients = {}
        slot = (service, account, region)
        if slot not in cache:
            session = self._session(*self.credentials(account), region)
            cache[slot] = session.client(
                service, endpoint_url=self.endpoint, config=self.config
            )
        return cache[slot]


class Seeder:
    def __init__(self, clients: Clients, run_id: str):
        self.clients = clients
        self.run_id = run_id
        self._lock = threading.Lock()
        self._serial = 0
        # (account, region) -> the untagged volume snapshots are taken of.
        self._snapshot_sources: dict[tuple[str, str], str] = {}
        # Accounts where the seed role for Lambda functions exists.
        self._lambda_roles: dict[str, str] = {}

    # --- naming -------------------------------------------------------------------------

    def name(self, entry: Entry) -> str:
        """A fresh name derived from the key: lowercase, [a-z0-9-], unique in this run and,
        through the run id, across runs against the same server."""
        with self._lock:
            self._serial += 1
            serial = self._serial
        suffix = f"-{self.run_id}-{serial}"
        stem = re.sub(r"[^a-z0-9]+", "-", entry.key.lower()).strip("-") or "seed"
        limit = NAME_LIMITS[entry.kind]
        # S3: must start with a letter or digit; "seed-" keeps it so and marks the origin.
        return f"seed-{stem}"[: limit - len(suffix)].rstrip("-") + suffix

    # --- per-type creation ---------------------------------------------------------------

    def ec2(self, entry: Entry) -> Any:
        return self.clients.client("ec2", entry.account, entry.region)

    def ec2_tag_specs(self, entry: Entry, resource_type: str) -> list[dict[str, Any]]:
        if not entry.tags:
            return []
        return [
            {
                "ResourceType": resource_type,
                "Tags": [{"Key": k, "Value": v} for k, v in entry.tags.items()],
            }
        ]

    def ec2_arn(self, entry: Entry, type_part: str, resource_id: str) -> str:
        p = partition(entry.region)
        return f"arn:{p}:ec2:{entry.region}:{entry.account}:{type_part}/{resource_id}"

    def instances(self, entry: Entry, count: int) -> list[Created]:
        """Launches `count` instances in one RunInstances call."""
        ec2 = self.ec2(entry)
        response = ec2.run_instances(
            ImageId=entry.image_id or AMI,
            InstanceType=INSTANCE_TYPE,
            MinCount=count,
            MaxCount=count,
            TagSpecifications=self.ec2_tag_specs(entry, "instance"),
        )
        ids = [i["InstanceId"] for i in response["Instances"]]
        if len(ids) != count:
            raise RuntimeError(f"RunInstances launched {len(ids)} of {count} instances")
        if entry.terminated:
            for start in range(0, len(ids), ID_BATCH):
                ec2.terminate_instances(InstanceIds=ids[start : start + ID_BATCH])
        return [Created(self.ec2_arn(entry, "instance", i), i) for i in ids]

    def volume(self, entry: Entry) -> Created:
        """An untagged volume; `tag_later` tags it."""
        response = self.ec2(entry).create_volume(AvailabilityZone=f"{entry.region}a", Size=1)
        return Created(self.ec2_arn(entry, "volume", response["VolumeId"]), response["VolumeId"])

    def snapshot_source(self, entry: Entry) -> str:
        """The untagged volume all snapshots in this account and region are taken of;
        made before the pool starts (see `prepare`)."""
        return self._snapshot_sources[(entry.account, entry.region)]

    def snapshot(self, entry: Entry) -> Created:
        """An untagged snapshot; `tag_later` tags it."""
        response = self.ec2(entry).create_snapshot(
            VolumeId=self.snapshot_source(entry), Description=f"seeded for {entry.key}"
        )
        return Created(
            self.ec2_arn(entry, "snapshot", response["SnapshotId"]), response["SnapshotId"]
        )

    def bucket(self, entry: Entry) -> Created:
        name = self.name(entry)
        s3 = self.clients.client("s3", entry.account, entry.region)
        args: dict[str, Any] = {"Bucket": name}
        if entry.region != "us-east-1":
            args["CreateBucketConfiguration"] = {"LocationConstraint": entry.region}
        s3.create_bucket(**args)
        if entry.tags:
            s3.put_bucket_tagging(
                Bucket=name,
                Tagging={"TagSet": [{"Key": k, "Value": v} for k, v in entry.tags.items()]},
            )
        for n in range(entry.objects):
            s3.put_object(Bucket=name, Key=f"obj-{n}", Body=b"plain")
        if entry.versioned:
            s3.put_bucket_versioning(
                Bucket=name, VersioningConfiguration={"Status": "Enabled"}
            )
            for n in range(3):
                s3.put_object(Bucket=name, Key="versioned", Body=f"version {n}".encode())
            s3.put_object(Bucket=name, Key="deleted", Body=b"soon a delete marker")
            s3.delete_object(Bucket=name, Key="deleted")
        return Created(f"arn:{partition(entry.region)}:s3:::{name}", name)

    def queue(self, entry: Entry) -> Created:
        name = self.name(entry)
        sqs = self.clients.client("sqs", entry.account, entry.region)
        args: dict[str, Any] = {"QueueName": name}
        if entry.tags:
            args["tags"] = entry.tags
        sqs.create_queue(**args)
        arn = f"arn:{partition(entry.region)}:sqs:{entry.region}:{entry.account}:{name}"
        return Created(arn, name)

    def table(self, entry: Entry) -> Created:
        name = self.name(entry)
        ddb = self.clients.client("dynamodb", entry.account, entry.region)
        args: dict[str, Any] = {
            "TableName": name,
            "AttributeDefinitions": [{"AttributeName": "id", "AttributeType": "S"}],
            "KeySchema": [{"AttributeName": "id", "KeyType": "HASH"}],
            "BillingMode": "PAY_PER_REQUEST",
        }
        if entry.tags:
            args["Tags"] = [{"Key": k, "Value": v} for k, v in entry.tags.items()]
        response = ddb.create_table(**args)
        return Created(response["TableDescription"]["TableArn"], name)

    def topic(self, entry: Entry) -> Created:
        name = self.name(entry)
        sns = self.clients.client("sns", entry.account, entry.region)
        args: dict[str, Any] = {"Name": name}
        if entry.tags:
            args["Tags"] = [{"Key": k, "Value": v} for k, v in entry.tags.items()]
        return Created(sns.create_topic(**args)["TopicArn"], name)

    def log_group(self, entry: Entry) -> Created:
        name = self.name(entry)
        logs = self.clients.client("logs", entry.account, entry.region)
        args: dict[str, Any] = {"logGroupName": name}
        if entry.tags:
            args["tags"] = entry.tags
        logs.create_log_group(**args)
        arn = f"arn:{partition(entry.region)}:logs:{entry.region}:{entry.account}:log-group:{name}"
        return Created(arn, name)

    def function(self, entry: Entry) -> Created:
        name = self.name(entry)
        lam = self.clients.client("lambda", entry.account, entry.region)
        args: dict[str, Any] = {
            "FunctionName": name,
            "Runtime": "python3.12",
            "Role": self._lambda_roles[entry.account],
            "Handler": "index.handler",
            "Code": {"ZipFile": LAMBDA_ZIP},
        }
        if entry.tags:
            args["Tags"] = entry.tags
        return Created(lam.create_function(**args)["FunctionArn"], name)

    def repository(self, entry: Entry) -> Created:
        name = self.name(entry)
        ecr = self.clients.client("ecr", entry.account, entry.region)
        args: dict[str, Any] = {"repositoryName": name}
        if entry.tags:
            args["tags"] = [{"Key": k, "Value": v} for k, v in entry.tags.items()]
        return Created(ecr.create_repository(**args)["repository"]["repositoryArn"], name)

    def secret(self, entry: Entry) -> Created:
        name = self.name(entry)
        sm = self.clients.client("secretsmanager", entry.account, entry.region)
        args: dict[str, Any] = {"Name": name, "SecretString": "seed"}
        if entry.tags:
            args["Tags"] = [{"Key": k, "Value": v} for k, v in entry.tags.items()]
        arn = sm.create_secret(**args)["ARN"]
        return Created(arn, arn.rsplit(":", 1)[-1])

    def key(self, entry: Entry) -> Created:
        kms = self.clients.client("kms", entry.account, entry.region)
        args: dict[str, Any] = {"Description": entry.key}
        if entry.tags:
            args["Tags"] = [{"TagKey": k, "TagValue": v} for k, v in entry.tags.items()]
        meta = kms.create_key(**args)["KeyMetadata"]
        return Created(meta["Arn"], meta["KeyId"])

    def rds(self, entry: Entry) -> Any:
        return self.clients.client("rds", entry.account, entry.region)

    def rds_tags(self, entry: Entry) -> list[dict[str, str]]:
        return [{"Key": k, "Value": v} for k, v in entry.tags.items()]

    def db_instance(self, entry: Entry) -> Created:
        name = self.name(entry)
        db = self.rds(entry).create_db_instance(
            DBInstanceIdentifier=name,
            DBInstanceClass="db.t3.micro",
            Engine="postgres",
            AllocatedStorage=20,
            MasterUsername="seed",
            MasterUserPassword="seed-password",
            Tags=self.rds_tags(entry),
        )["DBInstance"]
        return Created(db["DBInstanceArn"], name)

    def db_cluster(self, entry: Entry) -> Created:
        name = self.name(entry)
        cluster = self.rds(entry).create_db_cluster(
            DBClusterIdentifier=name,
            Engine="aurora-postgresql",
            MasterUsername="seed",
            MasterUserPassword="seed-password",
            Tags=self.rds_tags(entry),
        )["DBCluster"]
        return Created(cluster["DBClusterArn"], name)

    def db_snapshot(self, entry: Entry) -> Created:
        """A manual snapshot of an untagged instance deleted right after (moto at once)."""
        name = self.name(entry)
        rds = self.rds(entry)
        source = f"{name}-src"
        rds.create_db_instance(
            DBInstanceIdentifier=source,
            DBInstanceClass="db.t3.micro",
            Engine="postgres",
            AllocatedStorage=20,
            MasterUsername="seed",
            MasterUserPassword="seed-password",
        )
        snapshot = rds.create_db_snapshot(
            DBSnapshotIdentifier=name, DBInstanceIdentifier=source, Tags=self.rds_tags(entry)
        )["DBSnapshot"]
        rds.delete_db_instance(DBInstanceIdentifier=source, SkipFinalSnapshot=True)
        return Created(snapshot["DBSnapshotArn"], name)

    def db_cluster_snapshot(self, entry: Entry) -> Created:
        """A manual snapshot of an untagged cluster deleted right after."""
        name = self.name(entry)
        rds = self.rds(entry)
        source = f"{name}-src"
        rds.create_db_cluster(
            DBClusterIdentifier=source,
            Engine="aurora-postgresql",
            MasterUsername="seed",
            MasterUserPassword="seed-password",
        )
        snapshot = rds.create_db_cluster_snapshot(
            DBClusterSnapshotIdentifier=name,
            DBClusterIdentifier=source,
            Tags=self.rds_tags(entry),
        )["DBClusterSnapshot"]
        rds.delete_db_cluster(DBClusterIdentifier=source, SkipFinalSnapshot=True)
        return Created(snapshot["DBClusterSnapshotArn"], name)

    def db_subnet_group(self, entry: Entry) -> Created:
        name = self.name(entry)
        group = self.rds(entry).create_db_subnet_group(
            DBSubnetGroupName=name,
            DBSubnetGroupDescription="seed",
            SubnetIds=[self.default_subnet(entry)],
            Tags=self.rds_tags(entry),
        )["DBSubnetGroup"]
        return Created(group["DBSubnetGroupArn"], name)

    def iam(self, entry: Entry) -> Any:
        return self.clients.client("iam", entry.account, DEFAULT_REGION)

    def iam_tags(self, entry: Entry) -> list[dict[str, str]]:
        return [{"Key": k, "Value": v} for k, v in entry.tags.items()]

    def role(self, entry: Entry) -> Created:
        name = self.name(entry)
        iam = self.iam(entry)
        role = iam.create_role(
            RoleName=name,
            Path="/seed/",
            AssumeRolePolicyDocument=LAMBDA_TRUST_POLICY,
            Tags=self.iam_tags(entry),
        )["Role"]
        if entry.in_use:
            policy = iam.create_policy(PolicyName=f"{name}-managed", PolicyDocument=SEED_POLICY)
            iam.attach_role_policy(RoleName=name, PolicyArn=policy["Policy"]["Arn"])
            iam.put_role_policy(RoleName=name, PolicyName="inline", PolicyDocument=SEED_POLICY)
            iam.create_instance_profile(InstanceProfileName=f"{name}-profile")
            iam.add_role_to_instance_profile(
                InstanceProfileName=f"{name}-profile", RoleName=name
            )
        return Created(role["Arn"], name)

    def user(self, entry: Entry) -> Created:
        name = self.name(entry)
        iam = self.iam(entry)
        user = iam.create_user(UserName=name, Path="/seed/", Tags=self.iam_tags(entry))["User"]
        if entry.in_use:
            iam.create_login_profile(UserName=name, Password="Seed-password-1!")
            iam.put_user_policy(UserName=name, PolicyName="inline", PolicyDocument=SEED_POLICY)
            policy = iam.create_policy(PolicyName=f"{name}-managed", PolicyDocument=SEED_POLICY)
            iam.attach_user_policy(UserName=name, PolicyArn=policy["Policy"]["Arn"])
            iam.create_group(GroupName=f"{name}-group")
            iam.add_user_to_group(GroupName=f"{name}-group", UserName=name)
            iam.upload_ssh_public_key(UserName=name, SSHPublicKeyBody=SEED_SSH_KEY)
            iam.upload_signing_certificate(UserName=name, CertificateBody=self_signed_pem())
        return Created(user["Arn"], name)

    def access_key(self, entry: Entry) -> Created:
        """A user carrying the entry's tags, and one active key of it; the key's ARN is the one
        ephemera names keys by (AWS gives them none)."""
        name = self.name(entry)
        iam = self.iam(entry)
        iam.create_user(UserName=name, Tags=self.iam_tags(entry))
        key = iam.create_access_key(UserName=name)["AccessKey"]["AccessKeyId"]
        return Created(f"arn:aws:iam::{entry.account}:access-key/{name}/{key}", key)

    def instance_profile(self, entry: Entry) -> Created:
        name = self.name(entry)
        iam = self.iam(entry)
        profile = iam.create_instance_profile(
            InstanceProfileName=name, Tags=self.iam_tags(entry)
        )["InstanceProfile"]
        if entry.in_use:
            iam.create_role(RoleName=f"{name}-role", AssumeRolePolicyDocument=LAMBDA_TRUST_POLICY)
            iam.add_role_to_instance_profile(InstanceProfileName=name, RoleName=f"{name}-role")
        return Created(profile["Arn"], name)

    def policy(self, entry: Entry) -> Created:
        name = self.name(entry)
        iam = self.iam(entry)
        policy = iam.create_policy(
            PolicyName=name, PolicyDocument=SEED_POLICY, Tags=self.iam_tags(entry)
        )["Policy"]
        if entry.in_use:
            iam.create_policy_version(
                PolicyArn=policy["Arn"], PolicyDocument=SEED_POLICY, SetAsDefault=False
            )
        return Created(policy["Arn"], name)

    def oidc_provider(self, entry: Entry) -> Created:
        name = self.name(entry)
        arn = self.iam(entry).create_open_id_connect_provider(
            Url=f"https://{name}.example.com",
            ClientIDList=["sts.amazonaws.com"],
            ThumbprintList=["a" * 40],
            Tags=self.iam_tags(entry),
        )["OpenIDConnectProviderArn"]
        return Created(arn, f"{name}.example.com")

    def elasticache(self, entry: Entry) -> Any:
        return self.clients.client("elasticache", entry.account, entry.region)

    def cache_cluster(self, entry: Entry) -> Created:
        name = self.name(entry)
        cluster = self.elasticache(entry).create_cache_cluster(
            CacheClusterId=name,
            Engine="redis",
            CacheNodeType="cache.t3.micro",
            NumCacheNodes=1,
            Tags=self.rds_tags(entry),
        )["CacheCluster"]
        return Created(cluster["ARN"], name)

    def replication_group(self, entry: Entry) -> Created:
        name = self.name(entry)
        group = self.elasticache(entry).create_replication_group(
            ReplicationGroupId=name,
            ReplicationGroupDescription="seed",
            Engine="redis",
            CacheNodeType="cache.t3.micro",
            Tags=self.rds_tags(entry),
        )["ReplicationGroup"]
        return Created(group["ARN"], name)

    def cache_subnet_group(self, entry: Entry) -> Created:
        name = self.name(entry)
        group = self.elasticache(entry).create_cache_subnet_group(
            CacheSubnetGroupName=name,
            CacheSubnetGroupDescription="seed",
            SubnetIds=[self.default_subnet(entry)],
            Tags=self.rds_tags(entry),
        )["CacheSubnetGroup"]
        return Created(group["ARN"], name)

    def user_instance(self, entry: Entry, **args: Any) -> str:
        """A fresh untagged running instance in zone `a`, to use what `in_use` asks for."""
        response = self.ec2(entry).run_instances(
            ImageId=AMI,
            InstanceType=INSTANCE_TYPE,
            MinCount=1,
            MaxCount=1,
            Placement={"AvailabilityZone": f"{entry.region}a"},
            **args,
        )
        return response["Instances"][0]["InstanceId"]

    def default_subnet(self, entry: Entry) -> str:
        subnets = self.ec2(entry).describe_subnets(
            Filters=[
                {"Name": "availability-zone", "Values": [f"{entry.region}a"]},
                {"Name": "default-for-az", "Values": ["true"]},
            ]
        )["Subnets"]
        if not subnets:
            raise RuntimeError(f"no default subnet in {entry.region}a")
        return subnets[0]["SubnetId"]

    def in_use_volume(self, entry: Entry) -> Created:
        created = self.volume(entry)
        instance = self.user_instance(entry)
        self.ec2(entry).attach_volume(VolumeId=created.id, InstanceId=instance, Device="/dev/sdf")
        created.used_by = [self.ec2_arn(entry, "instance", instance)]
        return created

    def image(self, entry: Entry) -> Created:
        ec2 = self.ec2(entry)
        instance = self.user_instance(entry)
        args: dict[str, Any] = {"InstanceId": instance, "Name": self.name(entry)}
        args["TagSpecifications"] = self.ec2_tag_specs(entry, "image")
        image_id = ec2.create_image(**args)["ImageId"]
        ec2.terminate_instances(InstanceIds=[instance])
        image = ec2.describe_images(ImageIds=[image_id])["Images"][0]
        snapshots = [
            m["Ebs"]["SnapshotId"] for m in image["BlockDeviceMappings"] if "Ebs" in m
        ]
        return Created(
            self.ec2_arn(entry, "image", image_id),
            image_id,
            snapshot_id=snapshots[0] if snapshots else None,
        )

    def security_group(self, entry: Entry) -> Created:
        ec2 = self.ec2(entry)
        group_id = ec2.create_security_group(
            GroupName=self.name(entry),
            Description=f"seeded for {entry.key}",
            TagSpecifications=self.ec2_tag_specs(entry, "security-group"),
        )["GroupId"]
        created = Created(self.ec2_arn(entry, "security-group", group_id), group_id)
        if entry.in_use:
            instance = self.user_instance(entry, SecurityGroupIds=[group_id])
            eni = ec2.create_network_interface(
                SubnetId=self.default_subnet(entry), Groups=[group_id]
            )["NetworkInterface"]["NetworkInterfaceId"]
            created.used_by = [
                self.ec2_arn(entry, "instance", instance),
                self.ec2_arn(entry, "network-interface", eni),
            ]
        return created

    def network_interface(self, entry: Entry) -> Created:
        ec2 = self.ec2(entry)
        eni = ec2.create_network_interface(
            SubnetId=self.default_subnet(entry),
            TagSpecifications=self.ec2_tag_specs(entry, "network-interface"),
        )["NetworkInterface"]["NetworkInterfaceId"]
        created = Created(self.ec2_arn(entry, "network-interface", eni), eni)
        if entry.in_use:
            instance = self.user_instance(entry)
            ec2.attach_network_interface(NetworkInterfaceId=eni, InstanceId=instance, DeviceIndex=1)
            created.used_by = [self.ec2_arn(entry, "instance", instance)]
        return created

    def address(self, entry: Entry) -> Created:
        ec2 = self.ec2(entry)
        allocation = ec2.allocate_address(
            Domain="vpc", TagSpecifications=self.ec2_tag_specs(entry, "elastic-ip")
        )["AllocationId"]
        created = Created(self.ec2_arn(entry, "elastic-ip", allocation), allocation)
        if entry.in_use:
            instance = self.user_instance(entry)
            ec2.associate_address(AllocationId=allocation, InstanceId=instance)
            created.used_by = [self.ec2_arn(entry, "instance", instance)]
        return created

    def key_pair(self, entry: Entry) -> Created:
        key_id = self.ec2(entry).create_key_pair(
            KeyName=self.name(entry), TagSpecifications=self.ec2_tag_specs(entry, "key-pair")
        )["KeyPairId"]
        return Created(self.ec2_arn(entry, "key-pair", key_id), key_id)

    def launch_template(self, entry: Entry) -> Created:
        template_id = self.ec2(entry).create_launch_template(
            LaunchTemplateName=self.name(entry),
            LaunchTemplateData={"ImageId": entry.image_id or AMI, "InstanceType": INSTANCE_TYPE},
            TagSpecifications=self.ec2_tag_specs(entry, "launch-template"),
        )["LaunchTemplate"]["LaunchTemplateId"]
        return Created(self.ec2_arn(entry, "launch-template", template_id), template_id)

    # --- the VPC family --------------------------------------------------------------------

    def tag_ec2(self, entry: Entry, resource_id: str) -> None:
        if entry.tags:
            tags = [{"Key": k, "Value": v} for k, v in entry.tags.items()]
            self.ec2(entry).create_tags(Resources=[resource_id], Tags=tags)

    def home_vpc(self, entry: Entry) -> str:
        """A fresh untagged VPC for one family member to live in."""
        return self.ec2(entry).create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]

    def home_subnet(self, entry: Entry, vpc_id: str, cidr: str = "10.0.1.0/24") -> str:
        return self.ec2(entry).create_subnet(
            VpcId=vpc_id, CidrBlock=cidr, AvailabilityZone=f"{entry.region}a"
        )["Subnet"]["SubnetId"]

    def family(self, entry: Entry, type_part: str, resource_id: str) -> Created:
        self.tag_ec2(entry, resource_id)
        return Created(self.ec2_arn(entry, type_part, resource_id), resource_id)

    def vpc(self, entry: Entry) -> Created:
        return self.family(entry, "vpc", self.home_vpc(entry))

    def subnet(self, entry: Entry) -> Created:
        return self.family(entry, "subnet", self.home_subnet(entry, self.home_vpc(entry)))

    def route_table(self, entry: Entry) -> Created:
        ec2 = self.ec2(entry)
        vpc_id = self.home_vpc(entry)
        table = ec2.create_route_table(VpcId=vpc_id)["RouteTable"]["RouteTableId"]
        ec2.associate_route_table(RouteTableId=table, SubnetId=self.home_subnet(entry, vpc_id))
        return self.family(entry, "route-table", table)

    def internet_gateway(self, entry: Entry) -> Created:
        ec2 = self.ec2(entry)
        gateway = ec2.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
        ec2.attach_internet_gateway(InternetGatewayId=gateway, VpcId=self.home_vpc(entry))
        return self.family(entry, "internet-gateway", gateway)

    def nat_gateway(self, entry: Entry) -> Created:
        ec2 = self.ec2(entry)
        subnet = self.home_subnet(entry, self.home_vpc(entry))
        allocation = ec2.allocate_address(Domain="vpc")["AllocationId"]
        nat = ec2.create_nat_gateway(SubnetId=subnet, AllocationId=allocation)
        return self.family(entry, "natgateway", nat["NatGateway"]["NatGatewayId"])

    def vpc_endpoint(self, entry: Entry) -> Created:
        endpoint = self.ec2(entry).create_vpc_endpoint(
            VpcId=self.home_vpc(entry),
            ServiceName=f"com.amazonaws.{entry.region}.s3",
            VpcEndpointType="Gateway",
        )["VpcEndpoint"]["VpcEndpointId"]
        return self.family(entry, "vpc-endpoint", endpoint)

    def egress_only_gateway(self, entry: Entry) -> Created:
        gateway = self.ec2(entry).create_egress_only_internet_gateway(
            VpcId=self.home_vpc(entry)
        )["EgressOnlyInternetGateway"]["EgressOnlyInternetGatewayId"]
        return self.family(entry, "egress-only-internet-gateway", gateway)

    def network_acl(self, entry: Entry) -> Created:
        acl = self.ec2(entry).create_network_acl(VpcId=self.home_vpc(entry))
        return self.family(entry, "network-acl", acl["NetworkAcl"]["NetworkAclId"])

    def dhcp_options(self, entry: Entry) -> Created:
        options = self.ec2(entry).create_dhcp_options(
            DhcpConfigurations=[{"Key": "domain-name", "Values": ["seed.internal"]}]
        )["DhcpOptions"]["DhcpOptionsId"]
        return self.family(entry, "dhcp-options", options)

    def peering_connection(self, entry: Entry) -> Created:
        ec2 = self.ec2(entry)
        peering = ec2.create_vpc_peering_connection(
            VpcId=self.home_vpc(entry), PeerVpcId=self.home_vpc(entry)
        )["VpcPeeringConnection"]["VpcPeeringConnectionId"]
        return self.family(entry, "vpc-peering-connection", peering)

    # --- controllers and their kin --------------------------------------------------------

    def tag_list(self, entry: Entry, key: str = "Key", value: str = "Value") -> list[dict[str, str]]:
        return [{key: k, value: v} for k, v in entry.tags.items()]

    def two_subnets(self, entry: Entry) -> tuple[str, list[str]]:
        """A fresh untagged VPC with subnets in zones `a` and `b`."""
        ec2 = self.ec2(entry)
        vpc_id = self.home_vpc(entry)
        subnets = [
            ec2.create_subnet(
                VpcId=vpc_id, CidrBlock=f"10.0.{n}.0/24", AvailabilityZone=f"{entry.region}{z}"
            )["Subnet"]["SubnetId"]
            for n, z in ((1, "a"), (2, "b"))
        ]
        return vpc_id, subnets

    def auto_scaling_group(self, entry: Entry) -> Created:
        """Empty (desired 0), from an untagged launch template."""
        name = self.name(entry)
        template = self.ec2(entry).create_launch_template(
            LaunchTemplateName=f"{name}-lt",
            LaunchTemplateData={"ImageId": AMI, "InstanceType": INSTANCE_TYPE},
        )["LaunchTemplate"]["LaunchTemplateId"]
        asg = self.clients.client("autoscaling", entry.account, entry.region)
        asg.create_auto_scaling_group(
            AutoScalingGroupName=name,
            LaunchTemplate={"LaunchTemplateId": template, "Version": "$Latest"},
            MinSize=0,
            MaxSize=1,
            DesiredCapacity=0,
            AvailabilityZones=[f"{entry.region}a"],
            Tags=[
                {"ResourceId": name, "ResourceType": "auto-scaling-group", "Key": k,
                 "Value": v, "PropagateAtLaunch": False}
                for k, v in entry.tags.items()
            ],
        )
        group = asg.describe_auto_scaling_groups(AutoScalingGroupNames=[name])
        return Created(group["AutoScalingGroups"][0]["AutoScalingGroupARN"], name)

    def launch_configuration(self, entry: Entry) -> Created:
        """Untagged whatever the spec says: AWS keeps no tags on a launch configuration."""
        name = self.name(entry)
        asg = self.clients.client("autoscaling", entry.account, entry.region)
        asg.create_launch_configuration(
            LaunchConfigurationName=name, ImageId=AMI, InstanceType=INSTANCE_TYPE
        )
        configs = asg.describe_launch_configurations(LaunchConfigurationNames=[name])
        return Created(configs["LaunchConfigurations"][0]["LaunchConfigurationARN"], name)

    def load_balancer(self, entry: Entry) -> Created:
        """An application load balancer over two untagged subnets."""
        name = self.name(entry)
        _, subnets = self.two_subnets(entry)
        elb = self.clients.client("elbv2", entry.account, entry.region)
        args: dict[str, Any] = {"Name": name, "Subnets": subnets}
        if entry.tags:
            args["Tags"] = self.tag_list(entry)
        lb = elb.create_load_balancer(**args)["LoadBalancers"][0]
        return Created(lb["LoadBalancerArn"], name)

    def target_group(self, entry: Entry) -> Created:
        """In an untagged VPC; `in_use`: an untagged load balancer's listener forwards to it."""
        name = self.name(entry)
        vpc_id, subnets = self.two_subnets(entry)
        elb = self.clients.client("elbv2", entry.account, entry.region)
        args: dict[str, Any] = {"Name": name, "Protocol": "HTTP", "Port": 80, "VpcId": vpc_id}
        if entry.tags:
            args["Tags"] = self.tag_list(entry)
        tg = elb.create_target_group(**args)["TargetGroups"][0]["TargetGroupArn"]
        used_by = []
        if entry.in_use:
            lb = elb.create_load_balancer(Name=f"{name[:26]}-lb", Subnets=subnets)
            lb_arn = lb["LoadBalancers"][0]["LoadBalancerArn"]
            elb.create_listener(
                LoadBalancerArn=lb_arn, Protocol="HTTP", Port=80,
                DefaultActions=[{"Type": "forward", "TargetGroupArn": tg}],
            )
            used_by.append(lb_arn)
        return Created(tg, name, used_by=used_by)

    def ecs_cluster(self, entry: Entry) -> Created:
        name = self.name(entry)
        ecs = self.clients.client("ecs", entry.account, entry.region)
        args: dict[str, Any] = {"clusterName": name}
        if entry.tags:
            args["tags"] = self.tag_list(entry, "key", "value")
        return Created(ecs.create_cluster(**args)["cluster"]["clusterArn"], name)

    def task_definition(self, entry: Entry, tagged: bool = True) -> Created:
        name = self.name(entry)
        ecs = self.clients.client("ecs", entry.account, entry.region)
        args: dict[str, Any] = {
            "family": name,
            "containerDefinitions": [{"name": "app", "image": "busybox", "memory": 128}],
        }
        if entry.tags and tagged:
            args["tags"] = self.tag_list(entry, "key", "value")
        arn = ecs.register_task_definition(**args)["taskDefinition"]["taskDefinitionArn"]
        return Created(arn, name)

    def ecs_service(self, entry: Entry) -> Created:
        """Desired 0, in an untagged cluster, from an untagged task definition."""
        name = self.name(entry)
        ecs = self.clients.client("ecs", entry.account, entry.region)
        cluster = ecs.create_cluster(clusterName=f"{name}-cluster")["cluster"]["clusterArn"]
        task = self.task_definition(entry, tagged=False).arn
        args: dict[str, Any] = {
            "cluster": cluster, "serviceName": name, "taskDefinition": task, "desiredCount": 0,
        }
        if entry.tags:
            args["tags"] = self.tag_list(entry, "key", "value")
        return Created(ecs.create_service(**args)["service"]["serviceArn"], name)

    def eks_cluster(self, entry: Entry, tagged: bool = True) -> Created:
        name = self.name(entry)
        eks = self.clients.client("eks", entry.account, entry.region)
        _, subnets = self.two_subnets(entry)
        args: dict[str, Any] = {
            "name": name, "roleArn": EKS_ROLE, "resourcesVpcConfig": {"subnetIds": subnets},
        }
        if entry.tags and tagged:
            args["tags"] = entry.tags
        arn = eks.create_cluster(**args)["cluster"]["arn"]
        used_by = []
        if entry.in_use and tagged:
            group = eks.create_nodegroup(
                clusterName=name, nodegroupName=f"{name}-ng", nodeRole=EKS_ROLE, subnets=subnets
            )
            profile = eks.create_fargate_profile(
                clusterName=name, fargateProfileName=f"{name}-fp", podExecutionRoleArn=EKS_ROLE,
                subnets=subnets, selectors=[{"namespace": "default"}],
            )
            used_by = [
                group["nodegroup"]["nodegroupArn"],
                profile["fargateProfile"]["fargateProfileArn"],
            ]
        return Created(arn, name, used_by=used_by)

    def nodegroup(self, entry: Entry) -> Created:
        """In an untagged cluster of its own."""
        name = self.name(entry)
        cluster = self.eks_cluster(entry, tagged=False).id
        eks = self.clients.client("eks", entry.account, entry.region)
        subnets = eks.describe_cluster(name=cluster)["cluster"]["resourcesVpcConfig"]["subnetIds"]
        args: dict[str, Any] = {
            "clusterName": cluster, "nodegroupName": name, "nodeRole": EKS_ROLE,
            "subnets": subnets,
        }
        if entry.tags:
            args["tags"] = entry.tags
        return Created(eks.create_nodegroup(**args)["nodegroup"]["nodegroupArn"], name)

    def stack(self, entry: Entry) -> Created:
        """One member, an SQS queue."""
        name = self.name(entry)
        cfn = self.clients.client("cloudformation", entry.account, entry.region)
        args: dict[str, Any] = {"StackName": name, "TemplateBody": STACK_TEMPLATE}
        if entry.tags:
            args["Tags"] = self.tag_list(entry)
        return Created(cfn.create_stack(**args)["StackId"], name)

    # --- orchestration -------------------------------------------------------------------

    def prepare(self, entries: list[Entry]) -> None:
        """What several copies share: credentials, snapshot source volumes, Lambda roles."""
        for entry in entries:
            with seeding(entry):
                self.clients.credentials(entry.account)
                slot = (entry.account, entry.region)
                if entry.kind == "ec2:snapshot" and slot not in self._snapshot_sources:
                    # Untagged on purpose: moto's GetResources never lists it.
                    volume = self.ec2(entry).create_volume(
                        AvailabilityZone=f"{entry.region}a", Size=1
                    )
                    self._snapshot_sources[slot] = volume["VolumeId"]
                if entry.kind == "lambda:function" and entry.account not in self._lambda_roles:
                    iam = self.clients.client("iam", entry.account, DEFAULT_REGION)
                    role = iam.create_role(
                        RoleName=f"seed-lambda-{self.run_id}",
                        AssumeRolePolicyDocument=LAMBDA_TRUST_POLICY,
                    )
                    self._lambda_roles[entry.account] = role["Role"]["Arn"]

    def tag_later(self, result: Result) -> None:
        """Tags an entry's volumes or snapshots with one CreateTags call per 1000 ids.

        Why not TagSpecifications on create: moto renders every EC2 response's tags by scanning
        the tags of *all* EC2 resources in the region, so each tagged create costs time linear
        in what is already tagged and seeding N volumes one by one is quadratic (10,000 took
        over a minute). Creating untagged and tagging in batches keeps it linear.
        """
        entry = result.entry
        if entry.kind not in TAG_LATER or not entry.tags:
            return
        ids = [c.id for c in result.created if c is not None]
        tags = [{"Key": k, "Value": v} for k, v in entry.tags.items()]
        with seeding(entry):
            for start in range(0, len(ids), ID_BATCH):
                self.ec2(entry).create_tags(Resources=ids[start : start + ID_BATCH], Tags=tags)

    def finish(self) -> None:
        """Deletes the snapshot source volumes, so EC2 listings show only what was asked for
        (moto, like AWS, keeps a snapshot whose volume is gone)."""
        for (account, region), volume_id in self._snapshot_sources.items():
            try:
                self.clients.client("ec2", account, region).delete_volume(VolumeId=volume_id)
            except Exception as error:
                raise SeedError(
                    f"deleting snapshot source volume {volume_id} (account {account}, "
                    f"region {region}): {type(error).__name__}: {error}"
                ) from error

    def jobs(self, entry: Entry, result: Result) -> list[Callable[[], None]]:
        """One job per API round trip that creates resources, each filling its slots."""

        def single(make: Callable[[Entry], Created], slot: int) -> Callable[[], None]:
            def job() -> None:
                with seeding(entry):
                    result.created[slot] = make(entry)

            return job

        def batch(start: int, count: int) -> Callable[[], None]:
            def job() -> None:
                with seeding(entry):
                    result.created[start : start + count] = self.instances(entry, count)

            return job

        if entry.kind == "ec2:instance":
            return [
                batch(start, min(INSTANCE_BATCH, entry.count - start))
                for start in range(0, entry.count, INSTANCE_BATCH)
            ]
        make = {
            "ec2:volume": self.in_use_volume if entry.in_use else self.volume,
            "ec2:snapshot": self.snapshot,
            "ec2:image": self.image,
            "ec2:security-group": self.security_group,
            "ec2:network-interface": self.network_interface,
            "ec2:elastic-ip": self.address,
            "ec2:key-pair": self.key_pair,
            "ec2:launch-template": self.launch_template,
            "ec2:vpc": self.vpc,
            "ec2:subnet": self.subnet,
            "ec2:route-table": self.route_table,
            "ec2:internet-gateway": self.internet_gateway,
            "ec2:natgateway": self.nat_gateway,
            "ec2:vpc-endpoint": self.vpc_endpoint,
            "ec2:egress-only-internet-gateway": self.egress_only_gateway,
            "ec2:network-acl": self.network_acl,
            "ec2:dhcp-options": self.dhcp_options,
            "ec2:vpc-peering-connection": self.peering_connection,
            "s3:bucket": self.bucket,
            "sqs:queue": self.queue,
            "dynamodb:table": self.table,
            "sns:topic": self.topic,
            "logs:log-group": self.log_group,
            "lambda:function": self.function,
            "ecr:repository": self.repository,
            "secretsmanager:secret": self.secret,
            "kms:key": self.key,
            "rds:db": self.db_instance,
            "rds:cluster": self.db_cluster,
            "rds:snapshot": self.db_snapshot,
            "rds:cluster-snapshot": self.db_cluster_snapshot,
            "rds:subgrp": self.db_subnet_group,
            "iam:role": self.role,
            "iam:instance-profile": self.instance_profile,
            "iam:policy": self.policy,
            "iam:oidc-provider": self.oidc_provider,
            "iam:user": self.user,
            "iam:access-key": self.access_key,
            "elasticache:cluster": self.cache_cluster,
            "elasticache:replicationgroup": self.replication_group,
            "elasticache:subnetgroup": self.cache_subnet_group,
            "autoscaling:autoScalingGroup": self.auto_scaling_group,
            "autoscaling:launchConfiguration": self.launch_configuration,
            "elasticloadbalancing:loadbalancer": self.load_balancer,
            "elasticloadbalancing:targetgroup": self.target_group,
            "ecs:cluster": self.ecs_cluster,
            "ecs:service": self.ecs_service,
            "ecs:task-definition": self.task_definition,
            "eks:cluster": self.eks_cluster,
            "eks:nodegroup": self.nodegroup,
            "cloudformation:stack": self.stack,
        }[entry.kind]
        return [single(make, slot) for slot in range(entry.count)]

    def run(self, entries: list[Entry], workers: int) -> list[Result]:
        results = [Result(e, [None] * e.count) for e in entries]
        self.prepare(entries)
        jobs = [job for e, r in zip(entries, results) for job in self.jobs(e, r)]
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="seed") as pool:
            futures = [pool.submit(job) for job in jobs]
            done, pending = wait(futures, return_when=FIRST_EXCEPTION)
            for future in pending:
                future.cancel()
            for future in futures:
                if future.done() and not future.cancelled() and future.exception():
                    raise future.exception()  # type: ignore[misc]
        for result in results:
            self.tag_later(result)
        self.finish()
        return results


@contextmanager
def seeding(entry: Entry) -> Iterator[None]:
    """Turns any failure inside into a SeedError naming the entry's key."""
    try:
        yield
    except SeedError:
        raise
    except Exception as error:
        raise SeedError(
            f"seeding {entry.kind} for key {entry.key!r} (account {entry.account}, "
            f"region {entry.region}): {type(error).__name__}: {error}"
        ) from error


def verify(clients: Clients, results: list[Result]) -> None:
    """Every tagged seeded ARN is listed by GetResources in its account and region."""
    expected: dict[tuple[str, str], dict[str, str]] = {}
    for result in results:
        if not result.entry.tags or result.entry.kind in UNLISTED:
            continue
        slot = (result.entry.account, result.entry.region)
        for created in result.created:
            assert created is not None
            expected.setdefault(slot, {})[created.arn] = result.entry.key
    for (account, region), arns in expected.items():
        tagging = clients.client("resourcegroupstaggingapi", account, region)
        listed = set()
        for page in tagging.get_paginator("get_resources").paginate():
            listed.update(m["ResourceARN"] for m in page["ResourceTagMappingList"])
        missing = sorted(set(arns) - listed)
        if missing:
            lines = "\n".join(f"  key {arns[arn]!r}: {arn}" for arn in missing)
            raise SeedError(
                f"verify: GetResources in account {account}, region {region} does not list "
                f"{len(missing)} tagged seeded ARN(s):\n{lines}"
            )


def lambda_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("index.py", "def handler(event, context):\n    return event\n")
    return buffer.getvalue()


LAMBDA_ZIP = lambda_zip()
SEED_POLICY = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "s3:ListBucket", "Resource": "*"}],
    }
)
LAMBDA_TRUST_POLICY = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "lambda.amazonaws.com"},
                "Action": "sts:AssumeRole",
            }
        ],
    }
)


def main() -> int:
    parser = argparse.ArgumentParser(
        description="Seed a moto server with resources described by a JSON spec on stdin."
    )
    parser.add_argument("--endpoint", required=True, help="moto's URL, http://127.0.0.1:PORT")
    parser.add_argument(
        "--verify",
        action="store_true",
        help="check every tagged seeded ARN is listed by GetResources",
    )
    parser.add_argument(
        "--workers", type=int, default=8, help="concurrent API calls (default 8)"
    )
    args = parser.parse_args()
    if not re.fullmatch(r"https?://[^/]+/?", args.endpoint):
        parser.error(f"--endpoint must be a base URL like http://127.0.0.1:5000, got {args.endpoint!r}")
    if "amazonaws.com" in args.endpoint:
        parser.error("--endpoint must be an emulator, never real AWS")
    if args.workers < 1:
        parser.error("--workers must be at least 1")

    try:
        entries = parse_spec(sys.stdin.read())
    except SpecError as e:
        print(f"seed: {e}", file=sys.stderr)
        return 2

    clients = Clients(args.endpoint.rstrip("/"))
    seeder = Seeder(clients, secrets.token_hex(3))
    try:
        results = seeder.run(entries, args.workers)
        if args.verify:
            verify(clients, results)
    except SeedError as e:
        print(f"seed: {e}", file=sys.stderr)
        return 1
    except Exception as e:  # noqa: BLE001 - anything else is still a failed seeding
        print(f"seed: {type(e).__name__}: {e}", file=sys.stderr)
        return 1

    out = []
    for r in results:
        for c in r.created:
            if c is None:
                continue
            entry: dict[str, Any] = {
                "key": r.entry.key,
                "arn": c.arn,
                "account": r.entry.account,
                "region": r.entry.region,
                "type": r.entry.kind,
                "id": c.id,
            }
            # Only when there is something to say, so other entries look as they always did.
            if c.used_by:
                entry["used_by"] = c.used_by
            if c.snapshot_id:
                entry["snapshot_id"] = c.snapshot_id
            out.append(entry)
    json.dump({"resources": out}, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
