"""Kubernetes: one Job manifest per case of a plan, for ``kubectl apply -f DIR``.

Nothing here talks to a cluster; the manifests are generated from the same plan as every other
executor and are validated against the Kubernetes API schema in the tests
(``kubernetes-validate``). Each Job:

* runs ``infrabench run`` with the command-line selection that yields exactly its case, and
  ``--hardware <class>`` so the pod re-checks its node's fingerprint against the class;
* is placed by ``nodeSelector: {infrabench.io/hardware-class: <class>}`` (label the nodes:
  ``kubectl label node NODE infrabench.io/hardware-class=<class>``);
* requests (and is limited to) one unit of the extended resource ``infrabench.io/bench-slot``,
  which each benchmark node advertises with capacity 1, so two cases never share a node (a
  node advertises it through its status, see ``SLOT_COMMAND``);
* mounts one ReadWriteMany claim at ``/work``: the artifact cache (content-addressed: a pod
  that finds its artifact there does not build it) and a results store per Job, merged with
  ``infrabench import``.

The driver-side artifact shipping of the Ray and Slurm executors is not done for Kubernetes:
the first pod to need an artifact builds it into the shared cache.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

from harness.case import Case
from harness.plan import Plan

CLASS_LABEL = "infrabench.io/hardware-class"
SLOT_RESOURCE = "infrabench.io/bench-slot"
SLOT_COMMAND = (
    "kubectl proxy & curl --header 'Content-Type: application/json-patch+json' --request PATCH "
    '--data \'[{"op": "add", "path": "/status/capacity/infrabench.io~1bench-slot", '
    '"value": "1"}]\' http://localhost:8001/api/v1/nodes/NODE/status'
)
START_S = 600  # pod scheduling, image pull and artifact build allowance, seconds


def job_name(case: Case) -> str:
    """A DNS-1123 name (at most 63 characters) unique per case: a readable stem and a hash."""
    stem = re.sub(r"[^a-z0-9-]+", "-", f"ib-{case.model}-{case.backend}-{case.shape}".lower())
    digest = hashlib.sha256(case.case_id.encode()).hexdigest()[:10]
    return f"{stem[:50].strip('-')}-{digest}"


def case_arguments(case: Case) -> list[str]:
    """``infrabench run`` options that select exactly ``case`` from its suite."""
    args = ["--model", case.model, "--variant", case.variant, "--backend", case.backend,
            "--batch", str(case.batch_size), "--threads", str(case.threads)]  # fmt: skip
    if case.seq_len is not None:
        args += ["--seq", str(case.seq_len)]
    for binding in case.bindings:
        value = binding.partition("=")[2]
        args += ["--shape" if "x" in value else "--dim", binding]
    if case.hardware:
        args += ["--hardware", case.hardware]
    return args


def job_manifest(
    case: Case, suite: str, image: str, claim: str, namespace: str | None = None
) -> dict[str, Any]:
    """The batch/v1 Job that measures ``case`` (suite path as seen inside the image)."""
    name = job_name(case)
    hardware = case.hardware or "any"
    env = {"INFRABENCH_CACHE": "/work/cache", "INFRABENCH_HARDWARE_CLASS": hardware}
    command = ["infrabench", "run", suite, *case_arguments(case),
               "--store", f"/work/results/{name}.duckdb"]  # fmt: skip
    pod: dict[str, Any] = {
        "restartPolicy": "Never",
        "containers": [
            {
                "name": "bench",
                "image": image,
                "command": command,
                "env": [{"name": k, "value": v} for k, v in env.items()],
                "resources": {"requests": {SLOT_RESOURCE: "1"}, "limits": {SLOT_RESOURCE: "1"}},
                "volumeMounts": [{"name": "work", "mountPath": "/work"}],
            }
        ],
        "volumes": [{"name": "work", "persistentVolumeClaim": {"claimName": claim}}],
    }
    if case.hardware:
        pod["nodeSelector"] = {CLASS_LABEL: case.hardware}
    metadata: dict[str, Any] = {
        "name": name,
        "labels": {"app.kubernetes.io/name": "infrabench", CLASS_LABEL: hardware},
        "annotations": {"infrabench.io/case-id": case.case_id},
    }
    if namespace:
        metadata["namespace"] = namespace
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": metadata,
        "spec": {
            "backoffLimit": case.settings.retries,
            "activeDeadlineSeconds": int(case.settings.timeout_s + START_S),
            "template": {"metadata": {"labels": {CLASS_LABEL: hardware}}, "spec": pod},
        },
    }


def write_manifests(
    plan: Plan, directory: Path, image: str, claim: str = "infrabench-work",
    suite: str | None = None,
) -> list[Path]:  # fmt: skip
    """One ``<job>.json`` (JSON is YAML; kubectl reads both) per case under ``directory``;
    ``suite`` is the suite's path inside the image (default: the path it was loaded from,
    which the image must hold at the same place, or a shipped suite's)."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for case in plan.cases:
        manifest = job_manifest(case, suite or plan.suite.name, image, claim)
        path = directory / f"{manifest['metadata']['name']}.json"
        path.write_text(json.dumps(manifest, indent=2) + "\n")
        paths.append(path)
    return paths
