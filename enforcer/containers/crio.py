"""Name, image, labels and pod of a Kubernetes container run by CRI-O.

CRI-O writes its record of a container into the OCI annotations, which runc
keeps in its state file (`config.labels`, as "key=value") under /run/runc:

- `io.container.manager`: "cri-o" (podman writes "libpod" there);
- `io.kubernetes.cri-o.ContainerType`: "sandbox" or "container";
- `io.kubernetes.cri-o.Labels`: the container's labels as one JSON object,
  with those the kubelet sets (`io.kubernetes.pod.name`,
  `io.kubernetes.pod.namespace`, `io.kubernetes.pod.uid`,
  `io.kubernetes.container.name`, which is "POD" for a sandbox);
- `io.kubernetes.container.name`, `io.kubernetes.pod.name`,
  `io.kubernetes.pod.namespace`: those labels again, as annotations of their own;
- `io.kubernetes.cri-o.ImageName`: the image as the pod spec names it
  (`io.kubernetes.cri-o.Image` is the resolved one);
- `io.kubernetes.cri-o.Metadata`: the CRI metadata, JSON with the CRI name;
- `io.kubernetes.cri-o.KubeName`, `io.kubernetes.cri-o.Namespace`: a
  sandbox's pod name and namespace.

podman also writes some `io.kubernetes.cri-o.*` annotations (`Created`,
`TTY`), so none of those alone says "CRI-O".
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping

from enforcer.containers.model import (
    CONTAINER_NAME_LABEL,
    POD_NAME_LABEL,
    POD_NAMESPACE_LABEL,
    SANDBOX_CONTAINER_NAME,
    RuntimeMetadata,
)

log = logging.getLogger(__name__)

CONTAINER_MANAGER = "io.container.manager"
MANAGER_CRIO = "cri-o"
CONTAINER_TYPE = "io.kubernetes.cri-o.ContainerType"
LABELS = "io.kubernetes.cri-o.Labels"
METADATA = "io.kubernetes.cri-o.Metadata"
IMAGE_NAME = "io.kubernetes.cri-o.ImageName"
IMAGE = "io.kubernetes.cri-o.Image"
KUBE_NAME = "io.kubernetes.cri-o.KubeName"
NAMESPACE = "io.kubernetes.cri-o.Namespace"
TYPE_SANDBOX = "sandbox"


def is_crio_container(annotations: Mapping[str, str]) -> bool:
    """Tell whether OCI annotations are those of a container CRI-O made."""
    return annotations.get(CONTAINER_MANAGER) == MANAGER_CRIO or CONTAINER_TYPE in annotations


def metadata_from_annotations(annotations: Mapping[str, str]) -> RuntimeMetadata:
    """Return name, image and labels from CRI-O's annotations.

    Labels are the container's CRI labels, with the pod's name and namespace
    filled in from the annotations when the labels lack them.
    """
    sandbox = annotations.get(CONTAINER_TYPE) == TYPE_SANDBOX
    labels = _json_object(annotations, LABELS)
    pod_name = (
        annotations.get(POD_NAME_LABEL)
        or labels.get(POD_NAME_LABEL)
        or (annotations.get(KUBE_NAME, "") if sandbox else "")
    )
    pod_namespace = (
        annotations.get(POD_NAMESPACE_LABEL)
        or labels.get(POD_NAMESPACE_LABEL)
        or (annotations.get(NAMESPACE, "") if sandbox else "")
    )
    if pod_name:
        labels[POD_NAME_LABEL] = pod_name
    if pod_namespace:
        labels[POD_NAMESPACE_LABEL] = pod_namespace
    name = annotations.get(CONTAINER_NAME_LABEL) or labels.get(CONTAINER_NAME_LABEL) or ""
    if not name:
        name = (
            SANDBOX_CONTAINER_NAME
            if sandbox
            else _json_object(annotations, METADATA).get("name", "")
        )
    return RuntimeMetadata(
        name=name,
        image=annotations.get(IMAGE_NAME) or annotations.get(IMAGE, ""),
        labels=labels,
    )


def _json_object(annotations: Mapping[str, str], key: str) -> dict[str, str]:
    text = annotations.get(key)
    if text is None:
        return {}
    try:
        value = json.loads(text)
    except ValueError as e:
        log.warning("CRI-O annotation %s is not JSON (%s); ignoring it", key, e)
        return {}
    if not isinstance(value, dict):
        log.warning("CRI-O annotation %s is not a JSON object; ignoring it", key)
        return {}
    # CRI metadata has a number (attempt) beside its strings.
    return {str(k): v for k, v in value.items() if isinstance(v, str)}
