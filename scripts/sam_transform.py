"""Prints template.yaml as CloudFormation deploys it: after the SAM transform (the same
samtranslator that `sam deploy` hands the template to), as JSON. Offline: each function's
CodeUri becomes an S3 URI, as `sam package` makes it, and AWS managed policies are not looked up.

usage: sam_transform.py TEMPLATE [Name=Value ...]
"""
import json
import os
import sys

from cfnlint.decode import decode
from samtranslator.translator.transform import transform


class NoManagedPolicies:
    """The template names AWS managed policies by full ARN, so no lookup is needed."""

    def load(self):
        return {}


def main():
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    template, errors = decode(sys.argv[1])
    if errors:
        sys.exit("cannot decode %s: %s" % (sys.argv[1], errors))
    params = dict(arg.split("=", 1) for arg in sys.argv[2:])
    for name, resource in template.get("Resources", {}).items():
        if resource.get("Type") == "AWS::Serverless::Function":
            resource.setdefault("Properties", {})["CodeUri"] = "s3://local-deploy/%s.zip" % name
    globals_ = template.get("Globals", {}).get("Function", {})
    globals_.pop("CodeUri", None)
    json.dump(transform(template, params, NoManagedPolicies()), sys.stdout)


main()
