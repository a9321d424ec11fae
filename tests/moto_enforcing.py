"""moto_server with its IAM enforcement on, made to judge the way AWS does where it matters here.

moto checks every call against the caller's IAM policies once INITIAL_NO_AUTH_ACTION_COUNT calls
have been made (moto docs: "IAM-like Access Control"). Left alone it has two gaps this project
would trip over:

* For most services moto does not know which resource a call acts on and checks the action
  against the resource "*", so a statement scoped to an ARN never matches and every
  least-privilege grant is denied. Here: SSM parameter calls are checked against the
  parameter's ARN; for calls whose resource moto cannot name, the action alone is checked
  (documented in the README as a limit of the local deploy).
* moto verifies a request's signature by re-encoding the form body it parsed, which differs
  from the AWS SDK for Rust's encoding for some characters (a StackSet's template body), so a
  correctly signed request fails. Signing is the SDK's business; the caller is still known by
  its access key and session token, and every action is still authorized.
* moto's trust check compares the caller's ARN with the trusted principal literally. In AWS a
  role session (arn:aws:sts::A:assumed-role/R/S) is trusted where its role
  (arn:aws:iam::A:role/R) is named, and an account principal (arn:aws:iam::A:root) hands the
  decision to that account's own policies; a service principal ({"Service": ...}) makes moto
  fail with a TypeError. Here the trust check follows AWS in these three cases.
* AWS Organizations gives each new account's OrganizationAccountAccessRole the
  AdministratorAccess policy; moto creates the role with no policy, so nothing could act in a
  member account. Here the role gets the same grant, inline.
* moto's /moto-api/data.json (which the fakes read to learn a caller's role and policies)
  keeps listing a role after it is deleted; here a deleted role leaves that list.
* moto's /moto-api/data.json dumps every model of every service (megabytes once EC2 has made
  default VPCs in each account and region), and the fakes read it on every call; here
  `?service=iam&service=sts` limits it to those services.
* moto refuses to register a delegated administrator for CloudFormation StackSets
  (member.org.stacksets.cloudformation.amazonaws.com), which AWS Organizations allows; here it
  is allowed. And moto keeps an organization's state with its management account, so a member
  account reads an empty organization; here the organization reads a delegated administrator
  may make (accounts, roots, OUs, delegated services) are served from that state.
* moto answers every denial in XML, which an SDK cannot read for a JSON-protocol service
  (Organizations, SSM); AWS answers those in JSON with the type AccessDeniedException.

Usage: python moto_enforcing.py -H 127.0.0.1 -p PORT   (same arguments as moto_server)
"""

import json
import sys

from moto.core.exceptions import JsonRESTError
from moto.iam import access_control, iam_backends
from moto.iam.models import IAMBackend, Role
from moto.organizations.models import (
    FakeAccount,
    FakeDelegatedAdministrator,
    OrganizationsBackend,
    organizations_backends,
)
from moto.moto_api._internal.responses import MotoAPIResponse
from moto.server import main
from moto.ssm.responses import SimpleSystemManagerResponse

_match_element = access_control.IAMPolicyStatement._check_element_matches


def _check_element_matches(self, statement_element, value):
    if statement_element == "Resource" and value == "*":
        return True  # moto could not name the resource: judge the action alone
    return _match_element(self, statement_element, value)


def _principal_names(principal):
    """The ARNs a trust policy may use to name this caller."""
    names = {principal}
    parts = principal.split(":", 5)
    if len(parts) == 6:
        account, resource = parts[4], parts[5]
        names.add(f"arn:{parts[1]}:iam::{account}:root")
        names.add(account)
        if parts[2] == "sts" and resource.startswith("assumed-role/"):
            role = resource.split("/")[1]
            names.add(f"arn:{parts[1]}:iam::{account}:role/{role}")
    return names


def _check_principal(self, principal):
    expected = self._statement.get("Principal")
    if not expected or expected == "*":
        return True
    aws = expected.get("AWS") if isinstance(expected, dict) else None
    if aws is None:
        return False  # a service or federated principal is never an AWS caller
    trusted = set(aws) if isinstance(aws, list) else {aws}
    return "*" in trusted or bool(trusted & _principal_names(principal))


def _ssm_resource(self):
    try:
        name = json.loads(self.body or "{}").get("Name")
    except ValueError:
        name = None
    if not name:
        return "*"
    if not name.startswith("/"):
        name = "/" + name
    return f"arn:aws:ssm:{self.region}:{self.current_account}:parameter{name}"


_raise_access_denied = access_control.IAMRequest._raise_access_denied


def _deny_in_the_protocol_of_the_call(self):
    content_type = {k.lower(): v for k, v in self._headers.items()}.get("content-type", "")
    if "json" in content_type:
        raise JsonRESTError(
            "AccessDeniedException",
            f"User: {self._access_key.arn} is not authorized to perform: {self._action}",
        )
    _raise_access_denied(self)


_account_init = FakeAccount.__init__


def _account_with_an_administrator_role(self, organization, **kwargs):
    _account_init(self, organization, **kwargs)
    role = kwargs.get("RoleName", "OrganizationAccountAccessRole")
    everything = {"Version": "2012-10-17",
                  "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
    iam_backends[self.id]["global"].put_role_policy(
        role, "AdministratorAccess", json.dumps(everything))


FakeAccount.__init__ = _account_with_an_administrator_role

_delete_role = IAMBackend.delete_role


def _delete_role_and_forget_it(self, role_name):
    role = self.get_role(role_name)
    _delete_role(self, role_name)
    Role.instances_tracked = [r for r in Role.instances_tracked if r is not role]


IAMBackend.delete_role = _delete_role_and_forget_it
FakeDelegatedAdministrator.SUPPORTED_SERVICES.append(
    "member.org.stacksets.cloudformation.amazonaws.com"
)


def _from_the_management_account(read):
    def served(self, *args, **kwargs):
        if self.org is None and self.account_id in organizations_backends.master_accounts:
            management, partition = organizations_backends.master_accounts[self.account_id]
            return read(organizations_backends[management][partition], *args, **kwargs)
        return read(self, *args, **kwargs)

    return served


for _read in (
    "list_accounts",
    "list_roots",
    "list_accounts_for_parent",
    "list_organizational_units_for_parent",
    "list_delegated_administrators",
    "list_delegated_services_for_account",
    "list_parents",
):
    setattr(OrganizationsBackend, _read, _from_the_management_account(getattr(OrganizationsBackend, _read)))
_model_data = MotoAPIResponse.model_data


def _model_data_of_the_services_asked(self, request, full_url, headers):
    from urllib.parse import parse_qs, urlparse

    from moto.core.model_instances import model_data

    wanted = parse_qs(urlparse(full_url).query).get("service")
    if not wanted:
        return _model_data(self, request, full_url, headers)
    results = {}
    for service in sorted(set(wanted) & set(model_data)):
        results[service] = {}
        for name, model in sorted(model_data[service].items()):
            instances = []
            for instance in model.instances_tracked:
                fields = {}
                for attr in dir(instance):
                    if attr.startswith("_"):
                        continue
                    try:
                        value = getattr(instance, attr)
                        json.dumps(value)
                    except (TypeError, AttributeError, ValueError):
                        continue
                    fields[attr] = value
                instances.append(fields)
            results[service][name] = instances
    return 200, {"Content-Type": "application/javascript"}, json.dumps(results)


MotoAPIResponse.model_data = _model_data_of_the_services_asked
access_control.IAMRequest._raise_access_denied = _deny_in_the_protocol_of_the_call
access_control.IAMRequestBase.check_signature = lambda self: None
access_control.IAMPolicyStatement._check_element_matches = _check_element_matches
access_control.IAMPolicyStatement._check_principal = _check_principal
SimpleSystemManagerResponse._determine_resource = _ssm_resource

if __name__ == "__main__":
    main(sys.argv[1:])
