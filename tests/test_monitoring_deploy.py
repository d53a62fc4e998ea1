"""The Kubernetes manifests use the names the on-call commands select on."""

from pathlib import Path

import yaml

K8S = Path(__file__).resolve().parent.parent / "deploy" / "k8s"


def documents():
    for path in sorted(K8S.glob("*.yaml")):
        yield from (doc for doc in yaml.safe_load_all(path.read_text()) if doc)


def deployments():
    return {doc["metadata"]["name"]: doc for doc in documents() if doc["kind"] == "Deployment"}


def test_everything_in_molam_namespace():
    for doc in documents():
        if doc["kind"] == "Namespace":
            assert doc["metadata"]["name"] == "molam"
        else:
            assert doc["metadata"]["namespace"] == "molam", doc["metadata"]["name"]


def test_deployment_names_and_labels():
    found = deployments()

    assert set(found) == {"molam-offline-web", "molam-offline-worker", "molam-offline-beat"}
    for name, doc in found.items():
        assert doc["spec"]["selector"]["matchLabels"] == {"app": name}
        assert doc["spec"]["template"]["metadata"]["labels"]["app"] == name


def test_images_are_molam_offline():
    for doc in documents():
        spec = doc.get("spec", {}).get("template", {}).get("spec", {})
        for container in spec.get("containers", []):
            assert container["image"].split(":")[0] == "molam/offline"


def test_single_beat():
    beat = deployments()["molam-offline-beat"]

    assert beat["spec"]["replicas"] == 1
    assert beat["spec"]["strategy"]["type"] == "Recreate"


def test_web_probes():
    container = deployments()["molam-offline-web"]["spec"]["template"]["spec"]["containers"][0]

    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
