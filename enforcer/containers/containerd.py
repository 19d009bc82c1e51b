"""Name, image and pod of a Kubernetes container run by containerd's CRI plugin.

The CRI plugin writes what it knows into the container's OCI annotations,
which runc keeps in its state file (`config.labels`, as "key=value"), under
/run/containerd/runc/k8s.io/<id>/state.json:

- `io.kubernetes.cri.container-type`: "sandbox" (the pod's pause container)
  or "container";
- `io.kubernetes.cri.container-name`: the container's name in the pod spec;
- `io.kubernetes.cri.sandbox-name`, `-namespace`, `-uid`: the pod's;
- `io.kubernetes.cri.image-name`: the image as the pod spec names it
  (`io.kubernetes.cri.podsandbox.image-name` for a sandbox, containerd 1.7+).

The container's own labels live in containerd's database, not here; enforcer
gives it the labels the kubelet sets on every container (pod name,
namespace and uid, container name), so selectors can name pods alike for
containerd and CRI-O.
"""

from __future__ import annotations

from collections.abc import Mapping

from enforcer.containers.model import (
    CONTAINER_NAME_LABEL,
    POD_NAME_LABEL,
    POD_NAMESPACE_LABEL,
    POD_UID_LABEL,
    SANDBOX_CONTAINER_NAME,
    RuntimeMetadata,
)

CONTAINER_TYPE = "io.kubernetes.cri.container-type"
CONTAINER_NAME = "io.kubernetes.cri.container-name"
SANDBOX_NAME = "io.kubernetes.cri.sandbox-name"
SANDBOX_NAMESPACE = "io.kubernetes.cri.sandbox-namespace"
SANDBOX_UID = "io.kubernetes.cri.sandbox-uid"
IMAGE_NAME = "io.kubernetes.cri.image-name"
SANDBOX_IMAGE_NAME = "io.kubernetes.cri.podsandbox.image-name"
TYPE_SANDBOX = "sandbox"


def is_cri_container(annotations: Mapping[str, str]) -> bool:
    """Tell whether OCI annotations are those of a container containerd's CRI plugin made."""
    return CONTAINER_TYPE in annotations


def metadata_from_annotations(annotations: Mapping[str, str]) -> RuntimeMetadata:
    """Return name, image and kubelet-style labels from containerd's CRI annotations.

    A sandbox is named "POD", as the kubelet names a pod's infra container.
    """
    sandbox = annotations.get(CONTAINER_TYPE) == TYPE_SANDBOX
    if sandbox:
        name = SANDBOX_CONTAINER_NAME
        image = annotations.get(SANDBOX_IMAGE_NAME, "")
    else:
        name = annotations.get(CONTAINER_NAME, "")
        image = annotations.get(IMAGE_NAME, "")
    labels = {
        label: annotations[key]
        for label, key in (
            (POD_NAME_LABEL, SANDBOX_NAME),
            (POD_NAMESPACE_LABEL, SANDBOX_NAMESPACE),
            (POD_UID_LABEL, SANDBOX_UID),
        )
        if key in annotations
    }
    if name:
        labels[CONTAINER_NAME_LABEL] = name
    return RuntimeMetadata(name=name, image=image, labels=labels)
