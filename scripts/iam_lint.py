"""Offline IAM and template analysis of what CloudFormation would deploy: cfripper (template
rules: privilege escalation, wildcards, trust) and parliament (every policy document against
AWS's own action, resource and condition-key definitions).

Each scenario (scope x connector mode, with every option that adds IAM turned on) is rendered
as CloudFormation would: the SAM transform (scripts/sam_transform.py, in .venv), attribute and
resource references given sample values, then parameters and conditions resolved (pycfmodel).
The member account template is checked the same way.

A finding fails the run unless the resource it names justifies it in its Metadata, as checkov
skips are justified:

    Metadata:
      iam-lint:
        skip:
          - id: WildcardResourceRule      # a cfripper rule or a parliament issue
            comment: why this is right

A SAM function's generated role (`<Function>Role`) is justified on the function.

usage: .venv-iam/bin/python scripts/iam_lint.py   (from the repository root)
"""
import json
import logging
import os
import re
import subprocess
import sys
import tempfile

from parliament import analyze_policy_string
from pycfmodel import parse

ACCOUNT = "111111111111"
REGION = "us-east-1"
STACK_ID = f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/apono-onboarding/1b2c3d4e"

COMMON = {
    "AponoConnectorId": "apono-connector-prod",
    "Permissions": "Full-Access (Manage IAM)",
    "ActivateStackSetsTrustedAccess": "true",
    "EnableApiAuthMode": "true",
    "ConnectorExternalId": "apono-7f3a9c",
    "PermissionsBoundaryArn": f"arn:aws:iam::{ACCOUNT}:policy/org-boundary",
}
DEPLOY = {
    "ConnectorMode": "Deploy",
    "VpcId": "vpc-0abc12345",
    "SubnetIds": "subnet-0abc12345",
    "ConnectorTokenSecretArn": f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:apono-AbCdEf",
}
EXISTING = {
    "ConnectorMode": "Existing",
    "ConnectorRoleArn": "arn:aws:iam::222222222222:role/apono-connector",
}
SCENARIOS = [
    {**COMMON, "Scope": scope, **mode}
    for scope in ("Organization", "Account")
    for mode in (DEPLOY, EXISTING)
]
MEMBER = {
    "AponoConnectorId": "apono-connector-prod",
    "ConnectorRoleArn": "arn:aws:iam::222222222222:role/apono-connector",
    "Permissions": "Full-Access (Manage IAM)",
    "EksManagerRoleArn": f"arn:aws:iam::{ACCOUNT}:role/EksAccessEntriesFunctionRole",
    "EksMemberRoleName": "apono-eks-access-apono-connector-prod",
    "AllowAuthModeSwitch": "true",
    "ConnectorExternalId": "apono-7f3a9c",
    "PermissionsBoundaryArn": f"arn:aws:iam::{ACCOUNT}:policy/org-boundary",
    "OwnerStackId": STACK_ID,
    "EksEventBusArn": f"arn:aws:events:{REGION}:{ACCOUNT}:event-bus/apono-eks-events-apono-connector-prod",
}
PSEUDO = {
    "AWS::AccountId": ACCOUNT,
    "AWS::Region": REGION,
    "AWS::Partition": "aws",
    "AWS::StackId": STACK_ID,
    "AWS::StackName": "apono-onboarding",
    "AWS::URLSuffix": "amazonaws.com",
}
ATTRIBUTE_SAMPLES = {
    "OrganizationId": "o-abcdefghij",
    "RootId": "r-ab12",
    "ManagementAccountId": ACCOUNT,
    "Regions": REGION,
    "DefaultRegions": REGION,
    "StackSetId": "apono-member-roles:1a2b",
}


def sample_values(template):
    """What `Ref` and `Fn::GetAtt` of each resource give, as CloudFormation would."""
    refs, atts = {}, {}
    for name, resource in template.get("Resources", {}).items():
        kind = resource.get("Type", "")
        service = kind.split("::")[1].lower() if kind.count("::") == 2 else "custom"
        arn = f"arn:aws:{service}:{REGION}:{ACCOUNT}:{name}"
        if kind == "AWS::IAM::Role":
            arn = f"arn:aws:iam::{ACCOUNT}:role/{name}"
            refs[name] = name
        elif kind == "AWS::Lambda::Function":
            arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}"
            refs[name] = name
        elif kind in ("AWS::SNS::Topic", "AWS::ECS::TaskDefinition"):
            refs[name] = arn
        elif kind == "AWS::Events::EventBus":
            arn = f"arn:aws:events:{REGION}:{ACCOUNT}:event-bus/{name}"
            refs[name] = name
        else:
            refs[name] = name
        atts[name] = arn
    return refs, atts


NO_VALUE = object()


class Renderer:
    """Resolves a template for one set of parameters, as CloudFormation does: conditions,
    `Fn::If` (the untaken branch dropped), `Ref`, `Fn::GetAtt` (sample values), `Fn::Sub`,
    `Fn::Join`, `Fn::Select`, `Fn::Split`, `AWS::NoValue`."""

    def __init__(self, template, parameters):
        self.refs, self.atts = sample_values(template)
        self.params = {**PSEUDO}
        for name, spec in template.get("Parameters", {}).items():
            value = parameters.get(name, spec.get("Default", ""))
            if spec.get("Type", "").startswith("CommaDelimitedList") or spec.get("Type", "").startswith("List<"):
                value = value if isinstance(value, list) else str(value).split(",")
            self.params[name] = value
        self.specs = template.get("Conditions", {})
        self.conditions = {}

    def condition(self, name):
        if name not in self.conditions:
            self.conditions[name] = self.truth(self.specs[name])
        return self.conditions[name]

    def truth(self, spec):
        (key, arg), = spec.items()
        if key == "Fn::Equals":
            left, right = (self.value(a) for a in arg)
            return left == right
        if key == "Fn::Not":
            return not self.truth(arg[0])
        if key == "Fn::And":
            return all(self.truth(a) for a in arg)
        if key == "Fn::Or":
            return any(self.truth(a) for a in arg)
        if key == "Condition":
            return self.condition(arg)
        raise ValueError(f"condition function {key}")

    def value(self, value):
        if isinstance(value, list):
            return [v for v in (self.value(v) for v in value) if v is not NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            (key, arg), = value.items()
            if key == "Ref":
                if arg == "AWS::NoValue":
                    return NO_VALUE
                return self.params[arg] if arg in self.params else self.refs.get(arg, arg)
            if key == "Fn::GetAtt":
                resource, attribute = arg if isinstance(arg, list) else arg.split(".", 1)
                if attribute == "Arn":
                    return self.atts.get(resource, f"arn:aws:iam::{ACCOUNT}:role/{resource}")
                return ATTRIBUTE_SAMPLES.get(attribute, f"{resource}-{attribute}")
            if key == "Fn::If":
                name, taken, untaken = arg
                return self.value(taken if self.condition(name) else untaken)
            if key == "Fn::Join":
                separator, items = arg
                return separator.join(str(i) for i in self.value(items))
            if key == "Fn::Select":
                index, items = arg
                return self.value(items)[int(self.value(index))]
            if key == "Fn::Split":
                separator, text = arg
                return str(self.value(text)).split(separator)
            if key == "Fn::Sub":
                text, variables = (arg, {}) if isinstance(arg, str) else arg
                variables = {k: self.value(v) for k, v in variables.items()}

                def one(match):
                    name = match.group(1)
                    if name in variables:
                        return str(variables[name])
                    if "." in name:
                        return str(self.value({"Fn::GetAtt": name.split(".", 1)}))
                    value = self.value({"Ref": name})
                    return ",".join(value) if isinstance(value, list) else str(value)

                return re.sub(r"\$\{([^!}][^}]*)\}", one, text)
        resolved = {k: self.value(v) for k, v in value.items()}
        return {k: v for k, v in resolved.items() if v is not NO_VALUE}

    def template(self, template):
        resources = {
            name: self.value({k: v for k, v in resource.items() if k != "Condition"})
            for name, resource in template.get("Resources", {}).items()
            if "Condition" not in resource or self.condition(resource["Condition"])
        }
        return {"AWSTemplateFormatVersion": "2010-09-09", "Resources": resources}


def render(template, parameters):
    rendered = Renderer(template, parameters).template(template)
    return rendered, parse(rendered)


def skips(source, resource):
    """{finding id: comment} justified on the resource (or on the SAM function of its role)."""
    resources = source.get("Resources", {})
    entry = resources.get(resource) or {}
    if not entry and resource.endswith("Role"):
        entry = resources.get(resource[: -len("Role")]) or {}
    listed = (entry.get("Metadata") or {}).get("iam-lint", {}).get("skip", [])
    return {s["id"]: s.get("comment", "") for s in listed}


def documents(model):
    """(resource, policy name, document) for every identity policy in the resolved model."""
    for name, resource in model.Resources.items():
        data = resource.model_dump(by_alias=True, exclude_none=True)
        props = data.get("Properties") or {}
        if data.get("Type") == "AWS::IAM::Role":
            for policy in props.get("Policies") or []:
                yield name, policy.get("PolicyName"), policy.get("PolicyDocument")
        elif data.get("Type") == "AWS::IAM::Policy":
            yield name, props.get("PolicyName"), props.get("PolicyDocument")


def cfripper_failures(rendered):
    with tempfile.TemporaryDirectory() as tmp:
        template_file = os.path.join(tmp, "template.json")
        with open(template_file, "w") as out:
            json.dump(rendered, out)
        out = subprocess.run(
            [os.path.join(os.path.dirname(sys.executable), "cfripper"), template_file,
             "--aws-account-id", ACCOUNT, "--format", "json", "--logging", "ERROR"],
            capture_output=True, text=True, check=False)
        if out.returncode not in (0, 2):
            sys.exit(f"cfripper failed ({out.returncode}): {out.stderr[-2000:]}")
        result = json.loads(out.stdout)
    if result.get("exceptions"):
        sys.exit(f"cfripper could not run every rule: {result['exceptions']}")
    for failure in result.get("failures", []):
        if failure.get("rule_mode") != "BLOCKING":
            continue  # cfripper's informational (DEBUG) findings
        for resource in failure.get("resource_ids") or ["(template)"]:
            yield resource, failure["rule"], failure["reason"]


ANALYZED = {"documents": 0}


def parliament_findings(model):
    for resource, policy, document in documents(model):
        ANALYZED["documents"] += 1
        analyzed = analyze_policy_string(json.dumps(document, default=str),
                                         include_community_auditors=False)
        for finding in analyzed.findings:
            detail = json.dumps(finding.detail, default=str)
            yield resource, finding.issue, f"{policy}: {detail}"


def tools_venv(script, *args):
    """Runs one of the project's scripts with the tools venv (samtranslator, cfn-lint)."""
    out = subprocess.run([os.path.join(".venv", "bin", "python"), script, *args],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def main():
    # pycfmodel logs every resource type it models generically: not findings.
    logging.getLogger("pycfmodel").setLevel(logging.ERROR)
    problems, checked, justified = [], 0, 0
    transformed = tools_venv("scripts/sam_transform.py", "template.yaml")
    source = tools_venv("scripts/template_json.py", "template.yaml")
    member = tools_venv("scripts/template_json.py", "templates/member-account.yaml")
    runs = [(f"template.yaml {p['Scope']}/{p['ConnectorMode']}", transformed, source, p)
            for p in SCENARIOS]
    runs.append(("templates/member-account.yaml", member, member, MEMBER))
    for label, template, origin, parameters in runs:
        rendered, model = render(template, parameters)
        findings = [("cfripper",) + f for f in cfripper_failures(rendered)]
        findings += [("parliament",) + f for f in parliament_findings(model)]
        for tool, resource, finding, detail in findings:
            checked += 1
            if finding in skips(origin, resource):
                justified += 1
                continue
            problems.append(f"{label}: {tool} {finding} on {resource}: {detail}")
    for problem in sorted(set(problems)):
        print(problem)
    print(f"iam-lint: {len(runs)} renderings, {ANALYZED['documents']} policy documents; "
          f"{checked} findings, {justified} justified on their resource, "
          f"{len(set(problems))} not")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
