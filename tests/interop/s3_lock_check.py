#!/usr/bin/env python3
"""Inspect Object Lock through the S3 API (boto3, signed requests), independently of coffre.

Usage: s3_lock_check.py ENDPOINT BUCKET PREFIX
Prints JSON: for every object version under PREFIX/, its lock mode, retain-until date, and what
happened when deleting that exact version. A control object without a lock is written and its
version deleted first, proving that a refusal below comes from the lock, not from the server.
"""
import json, sys, uuid
import boto3, botocore

endpoint, bucket, prefix = sys.argv[1:4]
s3 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="testing",
                  aws_secret_access_key="testing", region_name="us-east-1")

def delete(key, version):
    try:
        s3.delete_object(Bucket=bucket, Key=key, VersionId=version)
        return "deleted"
    except botocore.exceptions.ClientError as e:
        return e.response["Error"]["Code"]

control_key = f"{prefix}-control/{uuid.uuid4()}"
control = s3.put_object(Bucket=bucket, Key=control_key, Body=b"control", ChecksumAlgorithm="SHA256")
result = {"control": delete(control_key, control["VersionId"]), "versions": []}
for v in s3.list_object_versions(Bucket=bucket, Prefix=prefix + "/").get("Versions", []):
    head = s3.head_object(Bucket=bucket, Key=v["Key"], VersionId=v["VersionId"])
    until = head.get("ObjectLockRetainUntilDate")
    result["versions"].append({
        "key": v["Key"],
        "mode": head.get("ObjectLockMode"),
        "until": until.isoformat() if until else None,
        "delete": delete(v["Key"], v["VersionId"]),
    })
print(json.dumps(result))
