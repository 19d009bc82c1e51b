"""CRI-O's metadata, from the OCI annotations in runc's state."""

from __future__ import annotations

from runtime_records import CRIO_POD_UID, CRIO_SANDBOX_STATE, CRIO_STATE, annotations_of

from enforcer.containers import crio
from enforcer.containers.model import RuntimeMetadata


def test_crio_container_metadata_from_annotations() -> None:
    annotations = annotations_of(CRIO_STATE)

    assert crio.is_crio_container(annotations)
    assert crio.metadata_from_annotations(annotations) == RuntimeMetadata(
        name="ledger",
        image="quay.io/example/ledger:1.8",
        labels={
            "app": "ledger",
            "controller-revision-hash": "ledger-6b8f7d9c4",
            "io.kubernetes.container.name": "ledger",
            "io.kubernetes.pod.name": "ledger-0",
            "io.kubernetes.pod.namespace": "finance",
            "io.kubernetes.pod.uid": CRIO_POD_UID,
            "statefulset.kubernetes.io/pod-name": "ledger-0",
        },
    )


def test_crio_sandbox_is_the_pods_pause_container() -> None:
    metadata = crio.metadata_from_annotations(annotations_of(CRIO_SANDBOX_STATE))

    assert metadata.name == "POD"
    assert metadata.image == "registry.k8s.io/pause:3.9"
    assert metadata.labels["io.kubernetes.pod.name"] == "ledger-0"
    assert metadata.labels["io.kubernetes.pod.namespace"] == "finance"


def test_crio_metadata_without_kubelet_labels() -> None:
    # What crictl makes: no kubelet labels, so the pod comes from CRI-O's own
    # annotations and the container name from its CRI metadata.
    sandbox = {
        "io.container.manager": "cri-o",
        "io.kubernetes.cri-o.ContainerType": "sandbox",
        "io.kubernetes.cri-o.KubeName": "podsandbox1",
        "io.kubernetes.cri-o.Namespace": "redhat.test.crio",
        "io.kubernetes.cri-o.Labels": '{"group":"test"}',
        "io.kubernetes.cri-o.ImageName": "registry.k8s.io/pause:3.6",
    }
    container = {
        "io.container.manager": "cri-o",
        "io.kubernetes.cri-o.ContainerType": "container",
        "io.kubernetes.cri-o.Labels": "not json",
        "io.kubernetes.cri-o.Metadata": '{"name":"podsandbox1-redis"}',
        "io.kubernetes.cri-o.Image": "quay.io/crio/redis:alpine",
    }

    assert crio.metadata_from_annotations(sandbox) == RuntimeMetadata(
        name="POD",
        image="registry.k8s.io/pause:3.6",
        labels={
            "group": "test",
            "io.kubernetes.pod.name": "podsandbox1",
            "io.kubernetes.pod.namespace": "redhat.test.crio",
        },
    )
    assert crio.metadata_from_annotations(container) == RuntimeMetadata(
        name="podsandbox1-redis", image="quay.io/crio/redis:alpine"
    )
