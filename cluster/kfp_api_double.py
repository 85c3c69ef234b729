#!/usr/bin/env python3
"""kfp-api-double: a request-validating DOUBLE of the Kubeflow Pipelines 2.17 API server (REST v2beta1).

It is not the KFP backend. The real API server could not be built here: the Go module proxy this
project builds from does not serve ``github.com/kubeflow/pipelines`` at any version (see
docs/local-cluster.md). This process stands in for it on the local cluster so that `kfp.Client`
(kfp 2.17.3) and pipeserve's submit/schedule talk to something that checks what they send:

* every JSON request body is checked against the ``kfp-server-api`` 2.17.3 models (unknown
  fields are refused, as the real gateway does with ``DiscardUnknown: false``; types and enum
  values are checked) and then deserialized with ``kfp_server_api.ApiClient().deserialize``;
* every pipeline spec, uploaded or inline in a run or recurring run, goes through a port of the
  backend's ``template.New``/``NewV2SpecTemplate`` (2.17.0): each YAML document is parsed into
  ``kfp.pipeline_spec.pipeline_spec_pb2.PipelineSpec`` (or ``PlatformSpec``), ``schemaVersion``
  must be 2.1.0, the pipeline name is checked, and run parameters are checked against the root
  component's inputs (a port of ``validatePipelineJobInputs``);
* recurring runs' cron expressions are parsed with a port of robfig/cron v1.2.0 ``cron.Parse``
  (what the backend uses: 6 fields, seconds first, day-of-week optional, ``@every``/``@daily``);
* refusals carry the real backend's HTTP status, gRPC code and message chain (the upload
  endpoint answers ``{"error_message", "error_details"}``, the gRPC gateway
  ``{"code", "message", "details"}``).

What it does NOT do: compile runs to Argo Workflows, create Workflow or ScheduledWorkflow
objects, execute or schedule anything. Runs stay PENDING, which is also what the real backend
shows without an Argo controller. State is kept in SQLite (``--state-dir``), so it survives a
restart of this process.

    python cluster/kfp_api_double.py --port 0 --state-dir .cluster/kfp-api-double

prints ``kfp-api-double listening on http://127.0.0.1:PORT`` once it serves.
"""

from __future__ import annotations

import argparse
import datetime as dt
import email.parser
import email.policy
import io
import json
import re
import signal
import sqlite3
import sys
import tarfile
import threading
import types
import uuid
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

NAME = "kfp-api-double"
KFP_VERSION = "2.17.0"  # the backend release whose behaviour is ported
SCHEMA_VERSION = "2.1.0"
DEFAULT_EXPERIMENT = "Default"
MAX_FILE_BYTES = 32 << 20  # common.MaxFileLength

# gRPC code -> (number, HTTP status), as grpc-gateway maps them.
CODES = {
    "INVALID_ARGUMENT": (3, 400), "NOT_FOUND": (5, 404), "ALREADY_EXISTS": (6, 409), "PERMISSION_DENIED": (7, 403),
    "FAILED_PRECONDITION": (9, 400), "ABORTED": (10, 409), "UNIMPLEMENTED": (12, 501), "INTERNAL": (13, 500),
    "UNAUTHENTICATED": (16, 401),
}
ERR_INVALID_SPEC = "pipeline spec is invalid"
ERR_INVALID_PLATFORM = "platform spec is invalid"


# --------------------------------------------------------------------------------------------
# errors, shaped like the backend's util.UserError


class Refusal(Exception):
    """A refused request: ``internal`` is the wrapped chain (gRPC message), ``external`` the user message."""

    def __init__(self, code: str, internal: str, external: str) -> None:
        super().__init__(internal)
        self.code, self.internal, self.external = code, internal, external

    @property
    def http_status(self) -> int:
        return CODES[self.code][1]

    def wrap(self, message: str) -> Refusal:
        """util.Wrap: prefix the internal chain, keep the external message and the code."""
        return Refusal(self.code, f"{message}: {self.internal}", self.external)

    def gateway_body(self) -> dict:
        number = CODES[self.code][0]
        return {"code": number, "message": self.internal,
                "details": [{"@type": "type.googleapis.com/google.rpc.Status", "code": number,
                             "message": self.external}]}


def invalid_input(message: str) -> Refusal:
    """util.NewInvalidInputError."""
    return Refusal("INVALID_ARGUMENT", f"Invalid input error: {message}", message)


def invalid_with_details(cause: str, message: str) -> Refusal:
    """util.NewInvalidInputErrorWithDetails(cause, message)."""
    return Refusal("INVALID_ARGUMENT", f"InvalidInputError: {message}: {cause}", message)


def internal(cause: Refusal | str, message: str) -> Refusal:
    """util.NewInternalServerError(cause, message)."""
    chain = cause.internal if isinstance(cause, Refusal) else cause
    return Refusal("INTERNAL", f"InternalServerError: {message}: {chain}", "Internal Server Error")


def not_found(kind: str, ident: str) -> Refusal:
    """util.NewResourceNotFoundError."""
    message = f"{kind} {ident} not found"
    return Refusal("NOT_FOUND", f"ResourceNotFoundError: {message}", message)


def already_exists(message: str) -> Refusal:
    return Refusal("ALREADY_EXISTS", f"Already exist error: {message}", message)


# --------------------------------------------------------------------------------------------
# request bodies against the kfp-server-api models


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


_INT64_AS_STRING = {"max_concurrency", "interval_second", "long_value", "total_size"}
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$")


def check_model(data: Any, type_name: str, path: str = "") -> Any:
    """Check ``data`` against a kfp-server-api type; return it with camelCase keys and enum numbers normalized.

    Raises a Refusal shaped like protojson's (the gateway's) errors on unknown fields, wrong
    types and unknown enum values.
    """
    import kfp_server_api

    where = path or "body"
    if type_name.startswith("list["):
        if not isinstance(data, list):
            raise _proto_error(f"{where}: expected a list, got {type(data).__name__}")
        return [check_model(v, type_name[5:-1], f"{where}[{i}]") for i, v in enumerate(data)]
    if type_name.startswith("dict("):
        value_type = type_name[5:-1].split(", ", 1)[1]
        if not isinstance(data, dict):
            raise _proto_error(f"{where}: expected an object, got {type(data).__name__}")
        return {k: check_model(v, value_type, f"{where}.{k}") for k, v in data.items()}
    if type_name == "object":
        return data
    if type_name == "str":
        leaf = path.rsplit(".", 1)[-1]
        if isinstance(data, bool) or not isinstance(data, (str, int)) or (
                isinstance(data, int) and leaf not in _INT64_AS_STRING):
            raise _proto_error(f"{where}: expected a string, got {json.dumps(data)}")
        if leaf in _INT64_AS_STRING and not re.fullmatch(r"-?\d+", str(data)):
            raise _proto_error(f"{where}: invalid value for int64 field: {json.dumps(data)}")
        return data
    if type_name == "int":
        if isinstance(data, bool) or not (isinstance(data, int) or (isinstance(data, str)
                                                                     and re.fullmatch(r"-?\d+", data))):
            raise _proto_error(f"{where}: invalid value for int32 field: {json.dumps(data)}")
        return int(data)
    if type_name == "bool":
        if not isinstance(data, bool):
            raise _proto_error(f"{where}: invalid value for bool field: {json.dumps(data)}")
        return data
    if type_name == "datetime":
        if not isinstance(data, str) or not _RFC3339.match(data):
            raise _proto_error(f"{where}: invalid google.protobuf.Timestamp value {json.dumps(data)}")
        return data
    cls = getattr(kfp_server_api, type_name, None) or getattr(kfp_server_api.models, type_name)
    allowed = getattr(cls, "allowable_values", None)
    if allowed is not None:  # an enum: its name, or its number (protojson accepts both)
        if isinstance(data, int) and not isinstance(data, bool) and 0 <= data < len(allowed):
            return allowed[data]
        if data not in allowed:
            raise _proto_error(f"{where}: invalid value for enum type: {json.dumps(data)} "
                               f"(expected one of {', '.join(allowed)})")
        return data
    if not isinstance(data, dict):
        raise _proto_error(f"{where}: expected an object for {type_name}, got {json.dumps(data)[:80]}")
    names = {}
    for attr in cls.openapi_types:
        names[cls.attribute_map[attr]] = attr
        names[_camel(cls.attribute_map[attr])] = attr
    out = {}
    for key, value in data.items():
        attr = names.get(key)
        if attr is None:
            raise _proto_error(f'unknown field "{key}" in {type_name.removeprefix("V2beta1")}'
                               + (f" (at {path})" if path else ""))
        if value is None:
            continue
        out[cls.attribute_map[attr]] = check_model(value, cls.openapi_types[attr], f"{path}.{key}" if path else key)
    return out


def _proto_error(message: str) -> Refusal:
    return Refusal("INVALID_ARGUMENT", f"proto: {message}", f"proto: {message}")


def parse_body(raw: bytes, type_name: str) -> tuple[dict, Any]:
    """JSON body -> (normalized dict, kfp_server_api model object)."""
    from kfp_server_api.api_client import ApiClient

    try:
        data = json.loads(raw or b"{}")
    except json.JSONDecodeError as exc:
        raise _proto_error(f"syntax error (line {exc.lineno}:{exc.colno}): {exc.msg}") from exc
    normalized = check_model(data, type_name)
    model = ApiClient().deserialize(types.SimpleNamespace(data=json.dumps(normalized)), type_name)
    return normalized, model


# --------------------------------------------------------------------------------------------
# pipeline specs: a port of template.New / NewV2SpecTemplate (kfp 2.17.0)


class Template:
    """A parsed v2 pipeline: the PipelineSpec (and PlatformSpec) protos and their JSON forms."""

    def __init__(self, spec: Any, spec_json: dict, platform_json: dict | None) -> None:
        self.spec, self.spec_json, self.platform_json = spec, spec_json, platform_json

    @property
    def name(self) -> str:
        return self.spec.pipeline_info.name

    def as_api_struct(self) -> dict:
        """What the API returns as pipeline_spec (with the platform spec beside it, if any)."""
        if self.platform_json is None:
            return self.spec_json
        return {"pipeline_spec": self.spec_json, "platform_spec": self.platform_json}

    def parameters(self) -> list[dict]:
        """ParametersJSON: the root inputs with their defaults, as the backend lists them."""
        params = []
        for name, p in sorted(self.spec.root.input_definitions.parameters.items()):
            entry = {"name": name}
            if p.HasField("default_value"):
                from google.protobuf import json_format

                entry["value"] = json.dumps(json_format.MessageToDict(p.default_value))
            params.append(entry)
        return params

    def validate_inputs(self, runtime_config: dict | None) -> None:
        """validatePipelineJobInputs."""
        from kfp.pipeline_spec import pipeline_spec_pb2

        PT = pipeline_spec_pb2.ParameterType
        required = dict(self.spec.root.input_definitions.parameters)
        values = (runtime_config or {}).get("parameters")
        if runtime_config is None:
            if required:
                raise invalid_input("pipeline requiring input has no parameter(s) provided. Need parameter(s): "
                                    + ", ".join(required))
            return
        values = values or {}
        kinds = {PT.NUMBER_DOUBLE: ((int, float), "double or integer", "number"),
                 PT.STRING: ((str,), "string", "string"),
                 PT.BOOLEAN: ((bool,), "bool", "bool"), PT.LIST: ((list,), "list", "list"),
                 PT.STRUCT: ((dict,), "struct", "struct")}
        kinds[PT.NUMBER_INTEGER] = kinds[PT.NUMBER_DOUBLE]
        for name, param in required.items():
            if name not in values:
                if not param.is_optional and not param.HasField("default_value"):
                    raise invalid_input(f"parameter {name} is not optional, yet has neither default value nor user "
                                        "provided value")
                continue
            value = values[name]
            if param.parameter_type == PT.PARAMETER_TYPE_ENUM_UNSPECIFIED:
                raise invalid_input(f"input parameter {name} has unspecified type")
            if param.parameter_type == PT.TASK_FINAL_STATUS:
                raise invalid_input(f"input parameter {name} requires type TASK_FINAL_STATUS, which is invalid for "
                                    "root component")
            if param.parameter_type not in kinds:
                raise invalid_input(f"input parameter {name} requires type unknown")
            py_types, word, kind = kinds[param.parameter_type]
            ok = isinstance(value, py_types) and not (isinstance(value, bool) and bool not in py_types)
            if not ok:
                if kind == "number":
                    raise invalid_input(f"input parameter {name} requires type {word}, but the parameter value is not "
                                        "of number value type")
                raise invalid_input(f"input parameter {name} requires type {word}, but the input parameter is not "
                                    f"of {kind} value type")
        extra = [n for n in values if n not in required]
        if extra:
            raise invalid_input("parameter(s) provided are not required by pipeline: " + ", ".join(extra))


def _yaml_docs(text: str) -> list[Any]:
    import yaml

    return list(yaml.safe_load_all(text))


def _parse_pipeline_spec(value: Any) -> Any | None:
    """isPipelineSpec: a PipelineSpec that parses, with a name and a root (else None)."""
    from google.protobuf import json_format
    from kfp.pipeline_spec import pipeline_spec_pb2

    if not isinstance(value, dict):
        return None
    spec = pipeline_spec_pb2.PipelineSpec()
    try:
        json_format.ParseDict(_jsonable(value), spec)
    except (json_format.ParseError, TypeError, ValueError):
        return None
    return spec if spec.pipeline_info.name and spec.HasField("root") else None


def _jsonable(value: Any) -> Any:
    """YAML values as JSON would carry them (dates and the like become strings)."""
    return json.loads(json.dumps(value, default=str))


def parse_template(text: str) -> Template:
    """template.New for a v2 spec; raises the backend's InvalidInput refusals."""
    from google.protobuf import json_format
    from kfp.pipeline_spec import pipeline_spec_pb2

    if not text.strip():
        raise invalid_with_details(ERR_INVALID_SPEC, "unknown template format")
    try:
        docs = _yaml_docs(text)
    except Exception as exc:  # noqa: BLE001 - yaml's errors, reported as the backend does
        raise invalid_with_details(ERR_INVALID_SPEC, f"unable to decode yaml document: {exc}") from exc
    first = docs[0] if docs else None
    if isinstance(first, dict) and str(first.get("apiVersion", "")).startswith("argoproj.io/") \
            and first.get("kind") == "Workflow":
        raise Refusal("UNIMPLEMENTED", f"{NAME}: v1 Argo Workflow templates are not supported by this double "
                      "(the real backend accepts them)", "v1 Argo Workflow templates are not supported")
    if not any(_parse_pipeline_spec(d) is not None for d in docs):
        # inferTemplateFormat: neither Argo nor a v2 spec. Say why the documents are not a PipelineSpec.
        raise invalid_with_details(ERR_INVALID_SPEC, "unknown template format")
    spec = None
    platform_json = None
    for doc in docs:
        if doc is None:
            continue
        parsed = _parse_pipeline_spec(doc)
        if parsed is not None:
            if spec is not None:
                raise invalid_with_details(ERR_INVALID_SPEC, "multiple pipeline specs provided")
            if parsed.schema_version != SCHEMA_VERSION:
                raise invalid_with_details(ERR_INVALID_SPEC, f"KFP only supports schema version {SCHEMA_VERSION}, "
                                           f"but the pipeline spec has version {parsed.schema_version}")
            if not re.search(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*",
                             parsed.pipeline_info.name):
                raise invalid_with_details(ERR_INVALID_SPEC, "invalid v2 pipeline spec: name should consist of lower "
                                           "case alphanumeric characters, '-' or '.', and must start and end with an "
                                           "alphanumeric character")
            spec, spec_json = parsed, _jsonable(doc)
        elif isinstance(doc, dict) and isinstance(doc.get("platforms"), dict) and "kubernetes" in doc["platforms"]:
            if platform_json is not None:
                raise invalid_with_details(ERR_INVALID_PLATFORM, "multiple platform specs provided")
            try:
                json_format.ParseDict(_jsonable(doc), pipeline_spec_pb2.PlatformSpec())
            except json_format.ParseError as exc:
                raise invalid_with_details(ERR_INVALID_PLATFORM,
                                           f"cannot unmarshal platform specific configs: {exc}") from exc
            platform_json = _jsonable(doc)
    if spec is None:
        raise invalid_with_details(ERR_INVALID_SPEC, "no pipeline spec is provided")
    return Template(spec, spec_json, platform_json)


def validate_pipeline_name(name: str) -> None:
    """common.ValidatePipelineName."""
    if not name:
        raise invalid_input("pipeline's name cannot be empty")
    if len(name) > 128:
        raise invalid_input("pipeline's name must contain no more than 128 characters")
    if not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,127}", name):
        raise invalid_input("pipeline's name must contain only lowercase alphanumeric characters or '-' and must "
                            "start with alphanumeric characters")


def read_pipeline_file(filename: str, data: bytes) -> str:
    """ReadPipelineFile: YAML/JSON as is, a zip or tar.gz holding one YAML file."""
    if len(data) > MAX_FILE_BYTES:
        raise invalid_input(f"File size too large. Maximum supported size: {MAX_FILE_BYTES}")
    lower = filename.lower()
    if lower.endswith((".yaml", ".yml", ".json")):
        return data.decode("utf-8", errors="replace")
    if data[:4] == b"PK\x03\x04":
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            names = [n for n in zf.namelist() if not n.endswith("/")]
            if len(names) != 1 or not names[0].endswith((".yaml", ".yml")):
                raise invalid_input("Error extracting pipeline from the zip file. Expecting a pipeline.yaml file "
                                    f"inside the zip. Got: {', '.join(names)}")
            return zf.read(names[0]).decode("utf-8", errors="replace")
    if data[:2] == b"\x1f\x8b":
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tf:
            members = [m for m in tf.getmembers() if m.isfile()]
            if len(members) != 1 or not members[0].name.endswith((".yaml", ".yml")):
                raise invalid_input("Error extracting pipeline from the tarball file. Expecting a pipeline.yaml file "
                                    "inside the tarball.")
            return tf.extractfile(members[0]).read().decode("utf-8", errors="replace")  # type: ignore[union-attr]
    raise invalid_input("Unexpected pipeline file format. Support .zip, .tar.gz, .json or YAML")


# --------------------------------------------------------------------------------------------
# cron: a port of github.com/robfig/cron v1.2.0 cron.Parse (Second|Minute|Hour|Dom|Month|DowOptional|Descriptor)

_MONTHS = {m: i + 1 for i, m in enumerate("jan feb mar apr may jun jul aug sep oct nov dec".split())}
_DAYS = {d: i for i, d in enumerate("sun mon tue wed thu fri sat".split())}
_BOUNDS = [(0, 59, None), (0, 59, None), (0, 23, None), (1, 31, None), (1, 12, _MONTHS), (0, 6, _DAYS)]
_DEFAULTS = ["0", "0", "0", "*", "*", "*"]
_GO_DURATION = re.compile(r"[-+]?(?:(?:\d+(?:\.\d*)?|\.\d+)(?:ns|us|µs|μs|ms|s|m|h))+|[-+]?0")
_DESCRIPTORS = {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}


class CronError(ValueError):
    pass


def parse_cron(spec: str) -> None:
    """Raise CronError with robfig/cron's message if ``spec`` does not parse."""
    if not spec:
        raise CronError("Empty spec string")
    if spec[0] == "@":
        if spec in _DESCRIPTORS:
            return
        if spec.startswith("@every "):
            if not _GO_DURATION.fullmatch(spec[len("@every "):]):
                raise CronError(f'Failed to parse duration {spec}: time: invalid duration "{spec[len("@every "):]}"')
            return
        raise CronError(f"Unrecognized descriptor: {spec}")
    fields = spec.split()
    if not 5 <= len(fields) <= 6:
        raise CronError(f"Expected 5 to 6 fields, found {len(fields)}: {spec}")
    fields = fields + _DEFAULTS[len(fields):]
    for field, bounds in zip(fields, _BOUNDS, strict=True):
        for expr in [e for e in field.split(",") if e]:
            _cron_range(expr, bounds)


def _cron_int(expr: str) -> int:
    if not re.fullmatch(r"[+-]?\d+", expr):
        raise CronError(f'Failed to parse int from {expr}: strconv.Atoi: parsing "{expr}": invalid syntax')
    num = int(expr)
    if abs(num) >= 1 << 63:
        raise CronError(f'Failed to parse int from {expr}: strconv.Atoi: parsing "{expr}": value out of range')
    if num < 0:
        raise CronError(f"Negative number ({num}) not allowed: {expr}")
    return num


def _cron_range(expr: str, bounds: tuple[int, int, dict | None]) -> None:
    low, high, names = bounds
    range_and_step = expr.split("/")
    low_and_high = range_and_step[0].split("-")
    single = len(low_and_high) == 1

    def value(text: str) -> int:
        if names and text.lower() in names:
            return names[text.lower()]
        return _cron_int(text)

    if low_and_high[0] in ("*", "?"):
        start, end = low, high
    else:
        start = value(low_and_high[0])
        if len(low_and_high) == 1:
            end = start
        elif len(low_and_high) == 2:
            end = value(low_and_high[1])
        else:
            raise CronError(f"Too many hyphens: {expr}")
    if len(range_and_step) == 1:
        step = 1
    elif len(range_and_step) == 2:
        step = _cron_int(range_and_step[1])
        if single:
            end = high
    else:
        raise CronError(f"Too many slashes: {expr}")
    if start < low:
        raise CronError(f"Beginning of range ({start}) below minimum ({low}): {expr}")
    if end > high:
        raise CronError(f"End of range ({end}) above maximum ({high}): {expr}")
    if start > end:
        raise CronError(f"Beginning of range ({start}) beyond end of range ({end}): {expr}")
    if step == 0:
        raise CronError(f"Step of range should be a positive number: {expr}")


# --------------------------------------------------------------------------------------------
# state (SQLite)


def now_rfc3339() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class Store:
    """Objects by kind (pipeline, version, experiment, run, recurring_run) as JSON rows, in creation order."""

    def __init__(self, path: Path | str) -> None:
        self.db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self.lock = threading.RLock()
        self.db.execute("CREATE TABLE IF NOT EXISTS objects (seq INTEGER PRIMARY KEY AUTOINCREMENT, "
                        "kind TEXT NOT NULL, id TEXT NOT NULL UNIQUE, parent TEXT, body TEXT NOT NULL)")

    def put(self, kind: str, ident: str, body: dict, parent: str | None = None) -> dict:
        with self.lock:
            self.db.execute("INSERT INTO objects (kind, id, parent, body) VALUES (?, ?, ?, ?) "
                            "ON CONFLICT(id) DO UPDATE SET body = excluded.body",
                            (kind, ident, parent, json.dumps(body)))
        return body

    def get(self, kind: str, ident: str) -> dict | None:
        with self.lock:
            row = self.db.execute("SELECT body FROM objects WHERE kind = ? AND id = ?", (kind, ident)).fetchone()
        return json.loads(row[0]) if row else None

    def all(self, kind: str, parent: str | None = None) -> list[dict]:
        with self.lock:
            if parent is None:
                rows = self.db.execute("SELECT body FROM objects WHERE kind = ? ORDER BY seq", (kind,)).fetchall()
            else:
                rows = self.db.execute("SELECT body FROM objects WHERE kind = ? AND parent = ? ORDER BY seq",
                                       (kind, parent)).fetchall()
        return [json.loads(r[0]) for r in rows]

    def delete(self, kind: str, ident: str) -> bool:
        with self.lock:
            return self.db.execute("DELETE FROM objects WHERE kind = ? AND id = ?", (kind, ident)).rowcount > 0


# --------------------------------------------------------------------------------------------
# listing: page_size/page_token, sort_by, filter (V2beta1Filter)

_OPS = {"EQUALS": lambda a, b: a == b, "NOT_EQUALS": lambda a, b: a != b, "GREATER_THAN": lambda a, b: a > b,
        "GREATER_THAN_EQUALS": lambda a, b: a >= b, "LESS_THAN": lambda a, b: a < b,
        "LESS_THAN_EQUALS": lambda a, b: a <= b, "IN": lambda a, b: a in b,
        "IS_SUBSTRING": lambda a, b: isinstance(a, str) and b in a}


def list_page(items: list[dict], query: dict[str, str], key: str, id_field: str) -> dict:
    if query.get("filter"):
        try:
            raw = json.loads(query["filter"])
        except json.JSONDecodeError as exc:
            raise invalid_input(f"failed to parse valid filter from {query['filter']!r}: {exc}") from exc
        flt = check_model(raw, "V2beta1Filter", "filter")
        for pred in flt.get("predicates", []):
            op = pred.get("operation", "OPERATION_UNSPECIFIED")
            if op not in _OPS:
                raise invalid_input(f"invalid predicate operation {op}")
            field = {"name": "display_name"}.get(pred["key"], pred["key"])
            if "string_values" in pred or "int_values" in pred or "long_values" in pred:
                wanted: Any = next(iter(v for k, v in pred.items() if k.endswith("_values")))
                wanted = list(wanted.get("values", []))
            else:
                wanted = next((v for k, v in pred.items() if k.endswith("_value")), None)
            items = [i for i in items if _OPS[op](i.get(field), wanted)]
    sort_by = (query.get("sort_by") or "").split()
    if sort_by:
        field = {"name": "display_name"}.get(sort_by[0], sort_by[0])
        items = sorted(items, key=lambda i: str(i.get(field, "")), reverse=sort_by[1:] == ["desc"])
    try:
        size = int(query.get("page_size") or 0)
        offset = int(query.get("page_token") or 0)
    except ValueError as exc:
        raise invalid_input(f"Invalid page size or token: {exc}") from exc
    page = items[offset:offset + size] if size > 0 else items[offset:]
    out: dict[str, Any] = {"total_size": len(items)}
    if page:
        out[key] = page
    if size > 0 and offset + size < len(items):
        out["next_page_token"] = str(offset + size)
    return out


# --------------------------------------------------------------------------------------------
# the API


class Api:
    """The v2beta1 resources; methods take (query, body bytes) and return a JSON-able dict or raise Refusal."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.lock = threading.RLock()
        if not any(e["display_name"] == DEFAULT_EXPERIMENT for e in store.all("experiment")):
            self._new_experiment(DEFAULT_EXPERIMENT, "All runs created without specifying an experiment will be "
                                 "grouped here.", "")

    # -- pipelines

    def upload_pipeline(self, query: dict, filename: str, data: bytes) -> dict:
        text = read_pipeline_file(filename, data)
        tmpl = self._template(text, "Failed to create a pipeline and a pipeline version due to template creation error")
        validate_pipeline_name(tmpl.name)
        name = query.get("name") or query.get("display_name") or _base_name(filename) or tmpl.name
        display = query.get("display_name") or name
        if len(name) > 128:
            raise invalid_input("Pipeline.Name length cannot exceed 128")
        namespace = query.get("namespace", "")
        with self.lock:
            if any(p["name"] == name and p.get("namespace", "") == namespace for p in self.store.all("pipeline")):
                raise already_exists(f"Failed to create a new pipeline. The name {name} already exists. Please "
                                     "specify a new name")
            pipeline = self._new_pipeline(name, display, query.get("description", ""), namespace)
            self._new_version(pipeline["pipeline_id"], name, display, query.get("description", ""), tmpl)
        return pipeline

    def upload_pipeline_version(self, query: dict, filename: str, data: bytes) -> dict:
        text = read_pipeline_file(filename, data)
        pipeline_id = query.get("pipelineid", "")
        if not pipeline_id:
            raise invalid_input("Failed to create a pipeline version")
        if self.store.get("pipeline", pipeline_id) is None:
            raise not_found("Pipeline", pipeline_id)
        tmpl = self._template(text, "Failed to create a pipeline version due to template creation error")
        name = query.get("name") or query.get("display_name") or _base_name(filename) or tmpl.name
        with self.lock:
            if any(v["name"] == name for v in self.store.all("version", pipeline_id)):
                raise already_exists(f"Failed to create a new pipeline version. The name {name} already exists. "
                                     "Please specify a new name")
            return self._new_version(pipeline_id, name, query.get("display_name") or name,
                                     query.get("description", ""), tmpl)

    def create_pipeline(self, query: dict, body: bytes) -> dict:
        data, _ = parse_body(body, "V2beta1Pipeline")
        name = data.get("name") or data.get("display_name", "")
        if not name:
            raise internal(invalid_input("Pipeline name cannot be empty"),
                           "Failed to convert API pipeline to its internal representation")
        namespace = data.get("namespace", "")
        with self.lock:
            if any(p["name"] == name and p.get("namespace", "") == namespace for p in self.store.all("pipeline")):
                raise already_exists(f"Failed to create a new pipeline. The name {name} already exists. Please "
                                     "specify a new name").wrap("Failed to create a pipeline")
            return self._new_pipeline(name, data.get("display_name") or name, data.get("description", ""), namespace)

    def create_pipeline_and_version(self, query: dict, body: bytes) -> dict:
        data, _ = parse_body(body, "V2beta1CreatePipelineAndVersionRequest")
        version = data.get("pipeline_version") or {}
        spec = version.get("pipeline_spec")
        if spec is None:
            raise Refusal("UNIMPLEMENTED", f"{NAME}: a pipeline version from package_url is not supported (no network "
                          "here); send pipeline_spec or use /pipelines/upload", "package_url is not supported")
        tmpl = self._template(_spec_text(spec), "Failed to create a pipeline and a pipeline version due to template "
                              "creation error")
        pipeline = data.get("pipeline") or {}
        name = pipeline.get("name") or pipeline.get("display_name") or tmpl.name
        with self.lock:
            created = self._new_pipeline(name, pipeline.get("display_name") or name, pipeline.get("description", ""),
                                         pipeline.get("namespace", ""))
            self._new_version(created["pipeline_id"], version.get("name") or name,
                              version.get("display_name") or name, version.get("description", ""), tmpl)
        return created

    def list_pipelines(self, query: dict, body: bytes) -> dict:
        namespace = query.get("namespace", "")
        items = [p for p in self.store.all("pipeline") if p.get("namespace", "") == namespace]
        return list_page(items, query, "pipelines", "pipeline_id")

    def get_pipeline(self, query: dict, body: bytes, pipeline_id: str) -> dict:
        pipeline = self.store.get("pipeline", pipeline_id)
        if pipeline is None:
            raise not_found("Pipeline", pipeline_id).wrap("Failed to get pipeline")
        return pipeline

    def get_pipeline_by_name(self, query: dict, body: bytes, name: str) -> dict:
        namespace = query.get("namespace", "")
        for p in self.store.all("pipeline"):
            if p["name"] == name and p.get("namespace", "") == namespace:
                return p
        raise not_found("Pipeline", name).wrap("Failed to get a pipeline by name")

    def delete_pipeline(self, query: dict, body: bytes, pipeline_id: str) -> dict:
        self.get_pipeline(query, body, pipeline_id)
        versions = self.store.all("version", pipeline_id)
        if versions and query.get("cascade") != "true":
            raise Refusal("FAILED_PRECONDITION", f"FailedPreconditionError: Failed to delete pipeline {pipeline_id}. "
                          "Pipeline has existing pipeline versions", "Pipeline has existing pipeline versions")
        for v in versions:
            self.store.delete("version", v["pipeline_version_id"])
        self.store.delete("pipeline", pipeline_id)
        return {}

    def list_versions(self, query: dict, body: bytes, pipeline_id: str) -> dict:
        self.get_pipeline(query, body, pipeline_id)
        return list_page(self.store.all("version", pipeline_id), query, "pipeline_versions", "pipeline_version_id")

    def get_version(self, query: dict, body: bytes, pipeline_id: str, version_id: str) -> dict:
        version = self.store.get("version", version_id)
        if version is None or version["pipeline_id"] != pipeline_id:
            raise not_found("PipelineVersion", version_id).wrap("Failed to get a pipeline version")
        return version

    def delete_version(self, query: dict, body: bytes, pipeline_id: str, version_id: str) -> dict:
        self.get_version(query, body, pipeline_id, version_id)
        self.store.delete("version", version_id)
        return {}

    def create_version(self, query: dict, body: bytes, pipeline_id: str) -> dict:
        data, _ = parse_body(body, "V2beta1PipelineVersion")
        self.get_pipeline(query, body, pipeline_id)
        if data.get("pipeline_spec") is None:
            raise Refusal("UNIMPLEMENTED", f"{NAME}: a pipeline version from package_url is not supported (no network "
                          "here); send pipeline_spec or use /pipelines/upload_version", "package_url is not supported")
        tmpl = self._template(_spec_text(data["pipeline_spec"]), "Failed to create a pipeline version due to template "
                              "creation error")
        name = data.get("name") or data.get("display_name") or tmpl.name
        return self._new_version(pipeline_id, name, data.get("display_name") or name, data.get("description", ""),
                                 tmpl)

    # -- experiments

    def create_experiment(self, query: dict, body: bytes) -> dict:
        data, _ = parse_body(body, "V2beta1Experiment")
        name = data.get("display_name", "")
        if not name:
            raise internal(invalid_input("Experiment must have a non-empty name"),
                           "Failed to convert API experiment to model experiment").wrap(
                "[ExperimentServer]: Failed to create a experiment due to conversion error")
        namespace = data.get("namespace", "")
        with self.lock:
            if any(e["display_name"] == name and e.get("namespace", "") == namespace
                   for e in self.store.all("experiment")):
                raise already_exists(f"Failed to create a new experiment. The name {name} already exists. Please "
                                     "specify a new name").wrap("Failed to create a experiment")
            return self._new_experiment(name, data.get("description", ""), namespace)

    def list_experiments(self, query: dict, body: bytes) -> dict:
        namespace = query.get("namespace", "")
        items = [e for e in self.store.all("experiment") if e.get("namespace", "") == namespace]
        return list_page(items, query, "experiments", "experiment_id")

    def get_experiment(self, query: dict, body: bytes, experiment_id: str) -> dict:
        experiment = self.store.get("experiment", experiment_id)
        if experiment is None:
            raise not_found("Experiment", experiment_id).wrap("Failed to fetch experiment")
        return experiment

    # -- runs

    def create_run(self, query: dict, body: bytes) -> dict:
        data, _ = parse_body(body, "V2beta1Run")
        if "plugins_output" in data:
            raise Refusal("ABORTED", "BadRequestError: plugins_output is server-owned and populated exclusively via "
                          "plugin lifecycle hooks: plugins_output must not be set by the client",
                          "plugins_output is server-owned and populated exclusively via plugin lifecycle hooks")
        if not data.get("display_name"):
            raise internal(invalid_input("Run name cannot be empty"), "Failed to convert a API run detail to its "
                           "internal representation").wrap("CreateJob(job.ToV2())Failed to create a run due to "
                                                            "conversion error")
        wrap = "Failed to create a new run"
        experiment_id = self._experiment_for(data.get("experiment_id", ""), wrap, "run")
        reference, tmpl = self._resolve_spec(data, "Failed to create a run due to error fetching manifest", wrap)
        try:
            tmpl.validate_inputs(data.get("runtime_config"))
        except Refusal as err:
            raise err.wrap("invalid pipeline job inputs").wrap("Failed to generate the ExecutionSpec").wrap(wrap) \
                from None
        created = now_rfc3339()
        run = {"experiment_id": experiment_id, "run_id": str(uuid.uuid4()), "display_name": data["display_name"],
               "storage_state": "AVAILABLE", "description": data.get("description"),
               "runtime_config": data.get("runtime_config"), "service_account": data.get("service_account"),
               "created_at": created, "scheduled_at": created, "finished_at": "1970-01-01T00:00:00Z",
               "state": "PENDING", "state_history": [{"update_time": created, "state": "PENDING"}],
               "recurring_run_id": data.get("recurring_run_id"), **reference}
        run = {k: v for k, v in run.items() if v not in (None, "")}
        self.store.put("run", run["run_id"], run, experiment_id)
        experiment = self.store.get("experiment", experiment_id)
        if experiment is not None:
            experiment["last_run_created_at"] = created
            self.store.put("experiment", experiment_id, experiment)
        return run

    def get_run(self, query: dict, body: bytes, run_id: str) -> dict:
        run = self.store.get("run", run_id)
        if run is None:
            raise not_found("Run", run_id).wrap("Failed to get a run")
        return run

    def list_runs(self, query: dict, body: bytes) -> dict:
        experiment_id = query.get("experiment_id")
        items = self.store.all("run", experiment_id) if experiment_id else self.store.all("run")
        return list_page(items, query, "runs", "run_id")

    def delete_run(self, query: dict, body: bytes, run_id: str) -> dict:
        self.get_run(query, body, run_id)
        self.store.delete("run", run_id)
        return {}

    # -- recurring runs

    def create_recurring_run(self, query: dict, body: bytes) -> dict:
        data, _ = parse_body(body, "V2beta1RecurringRun")
        wrap = "Failed to create a recurring run"
        if not data.get("display_name"):
            raise internal(invalid_input("Recurring run's name cannot be empty"), "Failed to convert a API recurring "
                           "run to its internal representation").wrap(wrap)
        max_concurrency = int(data.get("max_concurrency") or 0)
        if not 1 <= max_concurrency <= 10:
            raise invalid_input("Max concurrency of a recurring run must be at least 1 and at most 10. Received "
                                f"{max_concurrency}").wrap(wrap)
        trigger = data.get("trigger")
        if not trigger or not (trigger.get("cron_schedule") or trigger.get("periodic_schedule")):
            raise internal(invalid_input("API Trigger cannot be nil"), "Failed to convert API trigger to its internal "
                           "representation").wrap(wrap)
        cron = (trigger.get("cron_schedule") or {}).get("cron")
        if trigger.get("cron_schedule") is not None:
            try:
                parse_cron(cron or "")
            except CronError as exc:
                raise invalid_input("Schedule cron is not a supported format(https://godoc.org/github.com/robfig/cron)"
                                    f". Error: {exc}").wrap(wrap) from None
        periodic = trigger.get("periodic_schedule")
        if periodic is not None and int(periodic.get("interval_second") or 0) < 1:
            raise invalid_input(f"Found invalid period schedule interval {int(periodic.get('interval_second') or 0)}. "
                                "Set at interval to least 1 second").wrap(wrap)
        experiment_id = self._experiment_for(data.get("experiment_id", ""), wrap, "recurring run")
        reference, tmpl = self._resolve_spec(data, "Failed to create a recurring run with an invalid pipeline spec "
                                             "manifest", wrap)
        try:
            tmpl.validate_inputs(data.get("runtime_config"))
        except Refusal as err:
            raise err.wrap(wrap) from None
        created = now_rfc3339()
        enabled = data.get("mode", "ENABLE") != "DISABLE"
        recurring = {"recurring_run_id": str(uuid.uuid4()), "display_name": data["display_name"],
                     "description": data.get("description"), "runtime_config": data.get("runtime_config"),
                     "service_account": data.get("service_account"), "max_concurrency": str(max_concurrency),
                     "trigger": trigger, "mode": "ENABLE" if enabled else "DISABLE", "created_at": created,
                     "updated_at": created, "status": "ENABLED" if enabled else "DISABLED",
                     "no_catchup": data.get("no_catchup"), "namespace": data.get("namespace"),
                     "experiment_id": experiment_id, **reference}
        recurring = {k: v for k, v in recurring.items() if v not in (None, "")}
        self.store.put("recurring_run", recurring["recurring_run_id"], recurring, experiment_id)
        return recurring

    def get_recurring_run(self, query: dict, body: bytes, recurring_run_id: str) -> dict:
        item = self.store.get("recurring_run", recurring_run_id)
        if item is None:
            raise not_found("RecurringRun", recurring_run_id).wrap("Failed to get a recurring run")
        return item

    def list_recurring_runs(self, query: dict, body: bytes) -> dict:
        experiment_id = query.get("experiment_id")
        items = self.store.all("recurring_run", experiment_id) if experiment_id else self.store.all("recurring_run")
        return list_page(items, query, "recurringRuns", "recurring_run_id")

    def enable_recurring_run(self, query: dict, body: bytes, recurring_run_id: str, enable: bool = True) -> dict:
        item = self.get_recurring_run(query, body, recurring_run_id)
        item.update(mode="ENABLE" if enable else "DISABLE", status="ENABLED" if enable else "DISABLED",
                    updated_at=now_rfc3339())
        self.store.put("recurring_run", recurring_run_id, item, item.get("experiment_id"))
        return {}

    def disable_recurring_run(self, query: dict, body: bytes, recurring_run_id: str) -> dict:
        return self.enable_recurring_run(query, body, recurring_run_id, enable=False)

    def delete_recurring_run(self, query: dict, body: bytes, recurring_run_id: str) -> dict:
        self.get_recurring_run(query, body, recurring_run_id)
        self.store.delete("recurring_run", recurring_run_id)
        return {}

    # -- helpers

    def _template(self, text: str, wrap: str) -> Template:
        try:
            return parse_template(text)
        except Refusal as err:
            raise err.wrap(wrap) from None

    def _new_pipeline(self, name: str, display: str, description: str, namespace: str) -> dict:
        pipeline = {"pipeline_id": str(uuid.uuid4()), "name": name, "display_name": display,
                    "description": description, "created_at": now_rfc3339(), "namespace": namespace}
        pipeline = {k: v for k, v in pipeline.items() if v}
        return self.store.put("pipeline", pipeline["pipeline_id"], pipeline)

    def _new_version(self, pipeline_id: str, name: str, display: str, description: str, tmpl: Template) -> dict:
        version = {"pipeline_id": pipeline_id, "pipeline_version_id": str(uuid.uuid4()), "name": name,
                   "display_name": display, "description": description, "created_at": now_rfc3339(),
                   "pipeline_spec": tmpl.as_api_struct()}
        version = {k: v for k, v in version.items() if v}
        return self.store.put("version", version["pipeline_version_id"], version, pipeline_id)

    def _new_experiment(self, name: str, description: str, namespace: str) -> dict:
        experiment = {"experiment_id": str(uuid.uuid4()), "display_name": name, "description": description,
                      "created_at": now_rfc3339(), "namespace": namespace, "storage_state": "AVAILABLE",
                      "last_run_created_at": "1970-01-01T00:00:00Z"}
        experiment = {k: v for k, v in experiment.items() if v}
        return self.store.put("experiment", experiment["experiment_id"], experiment)

    def _experiment_for(self, experiment_id: str, wrap: str, what: str) -> str:
        if not experiment_id:
            default = next(e for e in self.store.all("experiment") if e["display_name"] == DEFAULT_EXPERIMENT)
            return default["experiment_id"]
        if self.store.get("experiment", experiment_id) is None:
            raise not_found("Experiment", experiment_id).wrap(f"Failed to fetch namespace for experiment "
                                                              f"{experiment_id}").wrap(
                f"Failed to create a {what} due to invalid experimentId and namespace combination").wrap(wrap)
        return experiment_id

    def _resolve_spec(self, data: dict, fetch_wrap: str, wrap: str) -> tuple[dict, Template]:
        """fetchTemplateFromPipelineSpec: the referenced version (latest of a pipeline) or the inline spec."""
        ref = data.get("pipeline_version_reference") or {}
        version_id = ref.get("pipeline_version_id") or data.get("pipeline_version_id")
        pipeline_id = ref.get("pipeline_id")
        try:
            if version_id or pipeline_id:
                if version_id:
                    version = self.store.get("version", version_id)
                    if version is None:
                        raise not_found("PipelineVersion", version_id).wrap(
                            "Failed to fetch a template due to error retrieving pipeline version")
                else:
                    versions = self.store.all("version", pipeline_id)
                    if not versions:
                        raise not_found("Pipeline", pipeline_id).wrap(
                            "Failed to fetch a template due to error retrieving pipeline version")
                    version = versions[-1]
                spec = version["pipeline_spec"]
                tmpl = parse_template(_spec_text(spec))
                return ({"pipeline_version_reference": {"pipeline_id": version["pipeline_id"],
                                                        "pipeline_version_id": version["pipeline_version_id"]}},
                        tmpl)
            spec = data.get("pipeline_spec")
            if spec is None:
                raise invalid_input("Failed to fetch a template with an empty pipeline spec manifest")
            try:
                tmpl = parse_template(_spec_text(spec))
            except Refusal as err:
                raise err.wrap("Failed to fetch a template with an invalid pipeline spec manifest") from None
            return {"pipeline_spec": tmpl.as_api_struct()}, tmpl
        except Refusal as err:
            raise internal(err, fetch_wrap).wrap(wrap) from None


def _spec_text(spec: Any) -> str:
    """An API pipeline_spec struct as the YAML text the backend hands template.New."""
    import yaml

    if isinstance(spec, dict) and "pipeline_spec" in spec and "platform_spec" in spec:
        return yaml.safe_dump(spec["pipeline_spec"]) + "\n---\n" + yaml.safe_dump(spec["platform_spec"])
    return yaml.safe_dump(spec) if not isinstance(spec, str) else spec


def _base_name(filename: str) -> str:
    """buildPipelineName: the file name without its extension."""
    base = Path(filename).name
    for suffix in (".tar.gz", ".tgz", ".zip", ".yaml", ".yml", ".json"):
        if base.lower().endswith(suffix):
            return base[: -len(suffix)]
    return base


# --------------------------------------------------------------------------------------------
# HTTP

_ID = r"(?P<{}>[^/:]+)"
ROUTES: list[tuple[str, re.Pattern[str], str]] = [
    (m, re.compile("^/apis/v2beta1/" + p.format(**{k: _ID.format(k) for k in ("p", "v", "e", "r", "rr", "n")}) + "$"),
     h)
    for m, p, h in [
        ("POST", "pipelines/create", "create_pipeline_and_version"),
        ("POST", "pipelines", "create_pipeline"),
        ("GET", "pipelines", "list_pipelines"),
        ("GET", "pipelines/names/{n}", "get_pipeline_by_name"),
        ("GET", "pipelines/{p}", "get_pipeline"),
        ("DELETE", "pipelines/{p}", "delete_pipeline"),
        ("POST", "pipelines/{p}/versions", "create_version"),
        ("GET", "pipelines/{p}/versions", "list_versions"),
        ("GET", "pipelines/{p}/versions/{v}", "get_version"),
        ("DELETE", "pipelines/{p}/versions/{v}", "delete_version"),
        ("POST", "experiments", "create_experiment"),
        ("GET", "experiments", "list_experiments"),
        ("GET", "experiments/{e}", "get_experiment"),
        ("POST", "runs", "create_run"),
        ("GET", "runs", "list_runs"),
        ("GET", "runs/{r}", "get_run"),
        ("DELETE", "runs/{r}", "delete_run"),
        ("POST", "recurringruns", "create_recurring_run"),
        ("GET", "recurringruns", "list_recurring_runs"),
        ("GET", "recurringruns/{rr}", "get_recurring_run"),
        ("DELETE", "recurringruns/{rr}", "delete_recurring_run"),
        ("POST", "recurringruns/{rr}:enable", "enable_recurring_run"),
        ("POST", "recurringruns/{rr}:disable", "disable_recurring_run"),
    ]
]


class Handler(BaseHTTPRequestHandler):
    api: Api
    server_version = f"{NAME}/{KFP_VERSION}"
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt: str, *args: Any) -> None:
        sys.stderr.write(f"{self.log_date_time_string()} {self.command} {self.path} {fmt % args}\n")

    def _send(self, status: int, payload: Any) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def do_GET(self) -> None:  # noqa: N802
        self._dispatch("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch("POST")

    def do_DELETE(self) -> None:  # noqa: N802
        self._dispatch("DELETE")

    def do_PATCH(self) -> None:  # noqa: N802
        self._body()
        self._send(501, Refusal("UNIMPLEMENTED", f"{NAME}: PATCH is not implemented", "Not implemented")
                   .gateway_body())

    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        path = unquote(url.path).rstrip("/")
        body = self._body()
        if path in ("/apis/v2beta1/healthz", "/apis/v1beta1/healthz") and method == "GET":
            self._send(200, {"commit_sha": NAME, "tag_name": f"{KFP_VERSION} ({NAME}: validates, compiles nothing)",
                             "multi_user": False, "pipeline_store": "database"})
            return
        if path in ("/apis/v2beta1/pipelines/upload", "/apis/v2beta1/pipelines/upload_version"):
            self._upload(method, path, query, body)
            return
        for route_method, pattern, handler in ROUTES:
            match = pattern.match(path)
            if match and route_method == method:
                try:
                    self._send(200, getattr(self.api, handler)(query, body, *match.groups()))
                except Refusal as err:
                    self.log_message("refused: %s", err.internal)
                    self._send(err.http_status, err.gateway_body())
                return
        self._send(404, {"code": 5, "message": "Not Found", "details": []})

    def _upload(self, method: str, path: str, query: dict, body: bytes) -> None:
        if method != "POST":
            self._send(405, {"error_message": "Method Not Allowed", "error_details": "Method Not Allowed"})
            return
        version = path.endswith("upload_version")
        try:
            filename, data = _multipart_file(self.headers.get("Content-Type", ""), body)
        except ValueError:
            failed = "Failed to create a pipeline version" if version else "Failed to read pipeline from file"
            self._send(400, {"error_message": failed, "error_details": failed})
            return
        try:
            if version:
                result = self.api.upload_pipeline_version(query, filename, data)
            else:
                result = self.api.upload_pipeline(query, filename, data)
        except Refusal as err:
            self.log_message("refused: %s", err.internal)
            status = {"INVALID_ARGUMENT": 400, "ALREADY_EXISTS": 409}.get(err.code, err.http_status)
            message = err.external if err.code == "INVALID_ARGUMENT" else (
                "Failed to create a pipeline version" if version else
                "Failed to create a pipeline and a pipeline version")
            self._send(status, {"error_message": message, "error_details": err.internal})
            return
        self._send(200, result)


def _multipart_file(content_type: str, body: bytes) -> tuple[str, bytes]:
    """The ``uploadfile`` part of a multipart/form-data body: (file name, bytes)."""
    if not content_type.startswith("multipart/form-data"):
        raise ValueError("not multipart")
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + body)
    for part in message.iter_parts():
        if part.get_param("name", header="content-disposition") == "uploadfile":
            return part.get_filename() or "pipeline.yaml", part.get_payload(decode=True) or b""
    raise ValueError("no uploadfile part")


def make_server(host: str, port: int, state_dir: Path) -> ThreadingHTTPServer:
    state_dir.mkdir(parents=True, exist_ok=True)
    api = Api(Store(state_dir / "kfp-api-double.sqlite"))
    handler = type("BoundHandler", (Handler,), {"api": api})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    return server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=NAME, description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0: any free port (printed)")
    parser.add_argument("--state-dir", type=Path, required=True, help="folder for the SQLite state")
    args = parser.parse_args(argv)
    server = make_server(args.host, args.port, args.state_dir)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown, daemon=True).start())
    print(f"{NAME} listening on http://{args.host}:{server.server_address[1]}", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
