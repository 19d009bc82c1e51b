"""containerd's (CRI) metadata, from the OCI annotations in runc's state."""

from __future__ import annotations

from runtime_records import (
    CONTAINERD_POD_UID,
    CONTAINERD_SANDBOX_STATE,
    CONTAINERD_STATE,
    annotations_of,
)

from enforcer.containers import containerd
from enforcer.containers.model import RuntimeMetadata


def test_containerd_container_metadata_from_annotations() -> None:
    annotations = annotations_of(CONTAINERD_STATE)

    assert containerd.is_cri_container(annotations)
    assert containerd.metadata_from_annotations(annotations) == RuntimeMetadata(
        name="checkout",
        image="registry.example.com/shop/checkout:2.4.1",
        labels={
            "io.kubernetes.pod.name": "checkout-7d9f8b6c5-x2k4p",
            "io.kubernetes.pod.namespace": "shop",
            "io.kubernetes.pod.uid": CONTAINERD_POD_UID,
            "io.kubernetes.container.name": "checkout",
        },
    )


def test_containerd_sandbox_is_the_pods_pause_container() -> None:
    metadata = containerd.metadata_from_annotations(annotations_of(CONTAINERD_SANDBOX_STATE))

    assert metadata.name == "POD"
    assert metadata.image == "registry.k8s.io/pause:3.9"
    assert metadata.labels["io.kubernetes.pod.name"] == "checkout-7d9f8b6c5-x2k4p"
    assert metadata.labels["io.kubernetes.pod.namespace"] == "shop"
