"""docker/compose.yaml: no Docker engine runs here, so check the file's promises directly.

The file is validated against the Compose Specification's JSON schema as check-jsonschema
vendors it (skipped where that package is missing), once as written and once with
docker/.env.example interpolated the way `docker compose` does it.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from flows.server import SERVER_SETTINGS

REPO = Path(__file__).resolve().parents[1]
DOCKER = REPO / "docker"

pytestmark = pytest.mark.unit

# Long-running services the code and the deployments expect, each with a health check.
EXPECTED_SERVICES = (
    "postgres",
    "minio",
    "prefect-server",
    "worker-cpu",
    "worker-gpu",
    "vllm-judge",
)
WORKERS = {"worker-cpu": "ldrt-cpu", "worker-gpu": "ldrt-gpu"}
GPU_SERVICES = ("worker-gpu", "vllm-judge")
# What ldrt needs in production (ldrt_core/config.py), besides PREFECT_API_URL.
WORKER_ENV = (
    "PREFECT_API_URL",
    "LDRT_HOME",
    "LDRT_DB_URL",
    "LDRT_STORE_URL",
    "LDRT_S3_ENDPOINT",
    "LDRT_S3_ACCESS_KEY",
    "LDRT_S3_SECRET_KEY",
    "LDRT_BASE_MODEL",
    "LDRT_JUDGES",
)
SECRET_KEY = re.compile(r"PASSWORD|SECRET|ACCESS_KEY|API_KEY|TOKEN")
# ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?error}, ${VAR?error}; $$ is a literal $.
VARIABLE = re.compile(
    r"\$\$|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}"
)
ONLY_A_REFERENCE = re.compile(r"^\$\{[A-Za-z_][A-Za-z0-9_]*(:?[-?][^}]*)?\}$")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    return data


@pytest.fixture(scope="module")
def env_example() -> dict[str, str]:
    values = {}
    for line in (DOCKER / ".env.example").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


def _strings(node: Any) -> list[str]:
    """Every string in a loaded YAML tree, keys included."""
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [s for k, v in node.items() for s in (*_strings(k), *_strings(v))]
    if isinstance(node, list):
        return [s for item in node for s in _strings(item)]
    return []


def _interpolate(node: Any, env: dict[str, str]) -> Any:
    """What `docker compose` does with ${...} before it validates the file."""

    def one(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, op, arg = match.group("name", "op", "arg")
        value = env.get(name)
        if op in (":?", "?") and (value is None or (op == ":?" and not value)):
            raise AssertionError(f"${{{name}}} is required: {arg}")
        if (op == ":-" and not value) or (op == "-" and value is None):
            return str(arg)
        return value or ""

    if isinstance(node, str):
        return VARIABLE.sub(one, node)
    if isinstance(node, dict):
        return {k: _interpolate(v, env) for k, v in node.items()}
    if isinstance(node, list):
        return [_interpolate(item, env) for item in node]
    return node


def _one_shot(compose: dict[str, Any], name: str) -> bool:
    """A job that runs once: not restarted, and what needs it waits for it to complete."""
    waits = [
        spec["condition"]
        for service in compose["services"].values()
        if isinstance(service.get("depends_on"), dict)
        for dep, spec in service["depends_on"].items()
        if dep == name
    ]
    restart = compose["services"][name].get("restart")
    return restart == "no" and bool(waits) and set(waits) == {"service_completed_successfully"}


def _command(service: dict[str, Any]) -> list[str]:
    command = service.get("command", [])
    return command.split() if isinstance(command, str) else [str(part) for part in command]


def test_file_follows_the_compose_specification(
    compose: dict[str, Any], env_example: dict[str, str]
) -> None:
    pytest.importorskip("check_jsonschema", reason="the Compose schema comes from check-jsonschema")
    from importlib.resources import files

    import jsonschema

    schema = json.loads(
        (files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json").read_text()
    )
    validator = jsonschema.validators.validator_for(schema)(schema)
    for variant in (compose, _interpolate(copy.deepcopy(compose), env_example)):
        errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(variant)]
        assert not errors, errors


def test_every_variable_without_a_default_is_in_the_env_example(
    compose: dict[str, Any], env_example: dict[str, str]
) -> None:
    text = (DOCKER / "compose.yaml").read_text()
    missing = {
        m.group("name")
        for m in VARIABLE.finditer(text)
        if m.group("name")
        and m.group("op") not in (":-", "-")
        and m.group("name") not in env_example
    }
    assert not missing, f"set these in docker/.env.example: {sorted(missing)}"
    _interpolate(copy.deepcopy(compose), env_example)  # no required variable left unset


def test_services_the_code_expects_are_there_with_health_checks(compose: dict[str, Any]) -> None:
    services = compose["services"]
    missing = [name for name in EXPECTED_SERVICES if name not in services]
    assert not missing, missing
    for name, service in services.items():
        if _one_shot(compose, name):
            continue
        check = service.get("healthcheck")
        assert check and check.get("test") and not check.get("disable"), f"{name}: no health check"
    assert services["minio-init"]["depends_on"]["minio"]["condition"] == "service_healthy"
    assert services["prefect-server"]["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_dependencies_and_volumes_are_declared(compose: dict[str, Any]) -> None:
    services = compose["services"]
    named_volumes = set(compose.get("volumes") or {})
    for name, service in services.items():
        for dep in service.get("depends_on") or {}:
            assert dep in services, f"{name} depends on unknown service {dep}"
            assert "gpu" not in (services[dep].get("profiles") or []) or service.get("profiles"), (
                f"{name} runs without the gpu profile but needs {dep}, which is in it"
            )
        for volume in service.get("volumes") or []:
            source = volume.split(":")[0] if isinstance(volume, str) else volume.get("source", "")
            if source and not source.startswith((".", "/", "$", "~")):
                assert source in named_volumes, f"{name}: volume {source} is not declared"


def test_workers_wait_for_the_services_they_use(compose: dict[str, Any]) -> None:
    for worker in WORKERS:
        depends = compose["services"][worker]["depends_on"]
        for dep in ("postgres", "minio", "prefect-server"):
            assert depends[dep]["condition"] == "service_healthy", (worker, dep)
        assert depends["minio-init"]["condition"] == "service_completed_successfully"


def test_deploy_job_registers_against_the_server_with_the_s3_store(
    compose: dict[str, Any],
) -> None:
    deploy = compose["services"]["ldrt-deploy"]
    assert deploy["command"] == ["ldrt-deploy"] and _one_shot(compose, "ldrt-deploy")
    assert deploy["depends_on"]["prefect-server"]["condition"] == "service_healthy"
    assert deploy["depends_on"]["minio-init"]["condition"] == "service_completed_successfully"
    env = deploy["environment"]
    assert env["PREFECT_API_URL"] == "http://prefect-server:4200/api"
    assert env["LDRT_STORE_URL"].startswith("s3://")  # so the S3 result storage block is made
    assert {"LDRT_REFRESH_CRON", "LDRT_REFRESH_SOURCE", "LDRT_RETRAIN_MIN_PAIRS"} <= set(env)


def test_postgres_is_healthy_only_once_both_databases_answer_over_tcp(
    compose: dict[str, Any],
) -> None:
    """The image's init server (fresh volume) listens on its socket only: a check over the
    socket, or pg_isready (which ignores -d), passes before the databases exist."""
    test = " ".join(compose["services"]["postgres"]["healthcheck"]["test"])
    assert "pg_isready" not in test and "-h 127.0.0.1" in test and "select 1" in test
    assert re.search(r"for db in ldrt prefect\b", test)


def test_both_worker_images_run_as_the_same_user() -> None:
    """They share the ldrt-home volume: another uid could not write what the first one made."""
    uids = {
        name: re.findall(r"useradd .*--uid (\d+) ldrt", (DOCKER / name).read_text())
        for name in ("Dockerfile", "Dockerfile.gpu")
    }
    assert uids["Dockerfile"] == uids["Dockerfile.gpu"] == ["1000"], uids


def test_prefect_and_ldrt_get_separate_databases(compose: dict[str, Any]) -> None:
    postgres = compose["services"]["postgres"]["environment"]
    assert postgres["POSTGRES_DB"] == "ldrt"
    assert postgres["LDRT_EXTRA_DATABASES"] == "prefect"
    url = compose["services"]["prefect-server"]["environment"][
        "PREFECT_SERVER_DATABASE_CONNECTION_URL"
    ]
    assert url.endswith("@postgres:5432/prefect")
    assert "CREATE DATABASE" in (DOCKER / "postgres" / "init-databases.sh").read_text()


def test_every_prefect_server_we_run_has_the_same_settings(compose: dict[str, Any]) -> None:
    """Compose's server and CI's run with flows.server's settings (the bench, the screenshots
    and the tests' temporary server take them from there)."""
    env = compose["services"]["prefect-server"]["environment"]
    assert {k: env.get(k) for k in SERVER_SETTINGS} == SERVER_SETTINGS
    ci = (REPO / ".ci" / "run").read_text()
    missing = [f"{k}={v}" for k, v in SERVER_SETTINGS.items() if f"{k}={v} " not in ci]
    assert not missing, f".ci/run starts its Prefect server without {missing}"


@pytest.mark.parametrize("worker", sorted(WORKERS))
def test_workers_get_what_ldrt_needs_in_production(compose: dict[str, Any], worker: str) -> None:
    env = compose["services"][worker]["environment"]
    missing = [key for key in WORKER_ENV if key not in env]
    assert not missing, f"{worker} lacks {missing}"
    assert env["PREFECT_API_URL"] == "http://prefect-server:4200/api"
    assert re.fullmatch(
        r"postgresql://\$\{POSTGRES_USER\}:\$\{POSTGRES_PASSWORD\}@postgres:5432/ldrt",
        env["LDRT_DB_URL"],
    ), env["LDRT_DB_URL"]
    assert env["LDRT_STORE_URL"].startswith("s3://")
    assert env["LDRT_S3_ENDPOINT"] == "http://minio:9000"
    assert "@http://vllm-judge:8000/v1" in env["LDRT_JUDGES"]
    assert env["HF_HUB_OFFLINE"] == "1"
    volumes = compose["services"][worker]["volumes"]
    assert any(v.endswith(f":{env['LDRT_HOME']}") for v in volumes), "LDRT_HOME is not a volume"
    assert env["LDRT_BASE_MODEL"].startswith("/models/")
    assert any(v.endswith(":/models:ro") for v in volumes), "the model folder is not mounted"


def test_no_secret_is_written_into_the_file(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for key, value in (service.get("environment") or {}).items():
            if SECRET_KEY.search(key):
                assert ONLY_A_REFERENCE.match(str(value)), (
                    f"{name}: {key} must come from docker/.env"
                )
            # A password inside a URL is a reference too.
            for password in re.findall(r"://[^:/@\s]+:([^@\s]+)@", str(value)):
                assert ONLY_A_REFERENCE.match(password), f"{name}: {key} has a literal password"


def test_the_bucket_is_created_private_with_a_user_of_its_own(compose: dict[str, Any]) -> None:
    entrypoint = " ".join(_strings(compose["services"]["minio-init"]["entrypoint"]))
    assert "mb --ignore-existing" in entrypoint
    assert "anonymous set none" in entrypoint
    assert "admin user add" in entrypoint and "policy attach" in entrypoint


@pytest.mark.parametrize(("worker", "pool"), sorted(WORKERS.items()))
def test_workers_serve_the_pools_the_deployments_use(
    compose: dict[str, Any], worker: str, pool: str
) -> None:
    command = _command(compose["services"][worker])
    assert command[:3] == ["prefect", "worker", "start"], command
    assert command[command.index("--pool") + 1] == pool
    assert command[command.index("--type") + 1] == "process"
    assert "--with-healthcheck" in command  # what the worker's health check asks
    if worker == "worker-gpu":
        assert command[command.index("--limit") + 1] == "1"


@pytest.mark.parametrize("name", GPU_SERVICES)
def test_gpu_services_reserve_an_nvidia_gpu_behind_the_gpu_profile(
    compose: dict[str, Any], name: str
) -> None:
    service = compose["services"][name]
    assert service["profiles"] == ["gpu"], "`docker compose up` must work on a CPU-only box"
    devices = service["deploy"]["resources"]["reservations"]["devices"]
    assert any(d["driver"] == "nvidia" and "gpu" in d["capabilities"] for d in devices)
    assert service.get("shm_size"), "NCCL and DeepSpeed need more /dev/shm than 64 MB"


def test_the_judge_serves_a_local_model_offline(
    compose: dict[str, Any], env_example: dict[str, str]
) -> None:
    judge = compose["services"]["vllm-judge"]
    image = _interpolate(judge["image"], env_example)
    repository, _, tag = image.partition(":")
    assert repository == "vllm/vllm-openai" and tag and tag != "latest", image
    args = _command(judge)
    assert args[0] == "/models/${LDRT_JUDGE_MODEL}"
    assert args[args.index("--port") + 1] == "8000"
    assert judge["environment"]["HF_HUB_OFFLINE"] == "1"
    assert any(v.endswith(":/models:ro") for v in judge["volumes"])
    assert "http://localhost:8000/health" in " ".join(judge["healthcheck"]["test"])
    served = args[args.index("--served-model-name") + 1]
    judges = compose["services"]["worker-gpu"]["environment"]["LDRT_JUDGES"]
    assert _interpolate(judges, env_example) == _interpolate(
        f"{served}@http://vllm-judge:8000/v1", env_example
    )


@pytest.mark.parametrize(
    ("dockerfile", "install"),
    [("docker/Dockerfile", "pip install"), ("docker/Dockerfile.gpu", "'.[gpu]'")],
)
def test_the_images_install_the_project(
    compose: dict[str, Any], dockerfile: str, install: str
) -> None:
    text = (REPO / dockerfile).read_text()
    assert re.search(r"^FROM \S+", text, re.M)
    assert install in text
    assert re.search(r"^COPY pyproject\.toml ", text, re.M)
    for package in ("ldrt_core", "tasks", "flows", "deployments"):  # pyproject's packages
        assert re.search(rf"^COPY {package} ", text, re.M), package
    built = [
        s["build"]
        for s in compose["services"].values()
        if isinstance(s.get("build"), dict) and s["build"]["dockerfile"] == dockerfile
    ]
    assert built and all((DOCKER / b["context"]).resolve() == REPO for b in built)


def test_the_cpu_image_starts_from_python_slim_and_the_gpu_one_from_cuda() -> None:
    assert re.search(r"^FROM python:3\.11-slim$", (DOCKER / "Dockerfile").read_text(), re.M)
    gpu = (DOCKER / "Dockerfile.gpu").read_text()
    assert re.search(r"^ARG CUDA_IMAGE=nvidia/cuda:\S+$", gpu, re.M)


def test_the_build_context_leaves_out_local_state_and_secrets() -> None:
    ignored = set((REPO / ".dockerignore").read_text().split())
    for path in (
        ".git",
        ".venv",
        ".ldrt",
        "**/.env",
        "**/__pycache__",
        ".pytest_cache",
        "docker/models",
    ):
        assert path in ignored, path
