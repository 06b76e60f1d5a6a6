"""Validates Kubernetes manifests offline, strictly: a field the schema does
not have is an error, as the API server's strict field validation (kubectl's
default) makes it.

  validate.py FILE...      every YAML document of each file ('-': stdin)

Kubernetes' own kinds are checked with kubernetes-validate's strict
schemas, against the oldest and the newest Kubernetes version below; the
prometheus-operator's ServiceMonitor and PrometheusRule against the JSON
schema of cloudcoil's models of their CRDs, closed the same way
(additionalProperties: false wherever the schema lists properties). A kind
with no schema is an error, never a pass. Prints one line per error, naming
the file, the resource and the field; exits 1 on any.
"""

import sys

import jsonschema
import kubernetes_validate as kv
import yaml
from cloudcoil.models.prometheus_operator import v1 as monitoring_v1

KUBERNETES_VERSIONS = ["1.29", "1.37"]
CRD_MODELS = {"monitoring.coreos.com/v1": monitoring_v1}


def closed(schema):
    """The schema with every object that lists properties closed to others,
    and pydantic's optional fields (anyOf: [X, null]) as X, so that an error
    names the field and what it expects rather than every alternative."""
    if isinstance(schema, dict):
        schema = {k: closed(v) for k, v in schema.items()}
        if "properties" in schema and "additionalProperties" not in schema:
            schema["additionalProperties"] = False
        alternatives = schema.get("anyOf")
        if isinstance(alternatives, list) and {"type": "null"} in alternatives:
            rest = [a for a in alternatives if a != {"type": "null"}]
            if len(rest) == 1:
                del schema["anyOf"]
                schema.update(rest[0])
        return schema
    if isinstance(schema, list):
        return [closed(v) for v in schema]
    return schema


_crd_validators = {}


def crd_validator(api_version, kind):
    key = (api_version, kind)
    if key not in _crd_validators:
        model = getattr(CRD_MODELS.get(api_version), kind, None)
        if model is None:
            return None
        schema = closed(model.model_json_schema(by_alias=True))
        _crd_validators[key] = jsonschema.Draft202012Validator(schema)
    return _crd_validators[key]


def path_of(error):
    return ".".join(str(p) for p in error.absolute_path) or "(top)"


def errors_of(doc):
    """(field path, message) of every error in one resource."""
    api_version, kind = doc.get("apiVersion"), doc.get("kind")
    if api_version in CRD_MODELS:
        validator = crd_validator(api_version, kind)
        if validator is None:
            return [("kind", f"no schema for {kind} of {api_version}")]
        return sorted(
            (path_of(e), e.message) for e in validator.iter_errors(doc)
        )
    found = []
    for version in KUBERNETES_VERSIONS:
        try:
            kv.validate(doc, version, strict=True)
        except kv.ValidationError as e:
            found.append((path_of(e), f"{e.message} (Kubernetes {version})"))
        except kv.SchemaNotFoundError as e:
            found.append(("kind", e.message))
    return found


def main(files):
    failed = 0
    checked = 0
    for name in files:
        text = sys.stdin.read() if name == "-" else open(name).read()
        for doc in yaml.safe_load_all(text):
            if not doc:
                continue
            checked += 1
            what = f"{doc.get('kind')}/{(doc.get('metadata') or {}).get('name')}"
            for path, message in errors_of(doc):
                if len(message) > 300:
                    message = message[:300] + "..."
                print(f"{name}: {what}: {path}: {message}")
                failed += 1
    print(f"validate: {checked} resources, {failed} errors", file=sys.stderr)
    if checked == 0:
        print("validate: no resources in the input", file=sys.stderr)
        return 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
