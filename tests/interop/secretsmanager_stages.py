"""Print the version stages of one AWS Secrets Manager secret, as boto3 sees them:
{"VERSION_ID": ["AWSCURRENT"], ...}. Usage: secretsmanager_stages.py ENDPOINT SECRET_ID"""
import json
import sys

import boto3

endpoint, secret_id = sys.argv[1:3]
client = boto3.client(
    "secretsmanager",
    endpoint_url=endpoint,
    region_name="eu-west-3",
    aws_access_key_id="coffre-test",
    aws_secret_access_key="coffre-test",
)
print(json.dumps(client.describe_secret(SecretId=secret_id)["VersionIdsToStages"]))
