"""Prints a CloudFormation template as JSON, short-form tags (!Ref, !GetAtt) expanded, using
cfn-lint's own decoder so that tests read the template exactly as the linter does."""
import json
import sys

from cfnlint.decode import decode

template, errors = decode(sys.argv[1])
if errors:
    sys.exit("cannot decode %s: %s" % (sys.argv[1], errors))
json.dump(template, sys.stdout)
