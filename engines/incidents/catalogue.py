"""The event reasons that mean something is broken, by what they say about the cluster. The default filter of the
event pipeline; operators extend or narrow it in settings."""

from __future__ import annotations

from collections.abc import Collection

CRITICAL_REASONS: dict[str, str] = {
    # containers that do not start or keep dying
    "BackOff": "a container restarts in a back-off loop (CrashLoopBackOff) or its image cannot be pulled",
    "CrashLoopBackOff": "a container keeps crashing",
    "Failed": "a container or image pull failed",
    "ErrImagePull": "the image cannot be pulled",
    "ImagePullBackOff": "the image pull keeps failing",
    "InspectFailed": "the image cannot be inspected",
    "ErrImageNeverPull": "the image is not present and the policy forbids pulling",
    "CreateContainerConfigError": "a container's config (ConfigMap, Secret, env) is missing",
    "CreateContainerError": "the runtime cannot create the container",
    "RunContainerError": "the runtime cannot start the container",
    "OOMKilling": "the kernel killed a process for memory",
    "OOMKilled": "a container was killed for memory",
    "Unhealthy": "a liveness, readiness or startup probe fails",
    "ProbeWarning": "a probe answers with warnings",
    "Killing": "a container is being killed (often after a failed liveness probe)",
    "ExceededGracePeriod": "a container did not stop in time",
    # scheduling and placement
    "FailedScheduling": "a pod fits on no node",
    "FailedPreemption": "preemption could not make room",
    "NotTriggerScaleUp": "the cluster autoscaler would not add a node",
    "FailedAttachVolume": "a volume cannot be attached",
    "FailedMount": "a volume cannot be mounted",
    "FailedMapVolume": "a block volume cannot be mapped",
    "ProvisioningFailed": "a volume cannot be provisioned",
    "VolumeResizeFailed": "a volume cannot be resized",
    "FailedBinding": "a claim binds to no volume",
    "Evicted": "a pod was evicted (node pressure)",
    "Preempting": "pods are being preempted",
    "Rebooted": "a node rebooted",
    # nodes
    "NodeNotReady": "a node is not ready",
    "NodeNotSchedulable": "a node was cordoned",
    "NodeHasDiskPressure": "a node runs out of disk",
    "NodeHasInsufficientMemory": "a node runs out of memory",
    "NodeHasInsufficientPID": "a node runs out of process ids",
    "EvictionThresholdMet": "a node starts evicting",
    "ContainerGCFailed": "the kubelet cannot collect containers",
    "ImageGCFailed": "the kubelet cannot collect images",
    "SystemOOM": "the node ran out of memory",
    "KubeletIsDown": "the kubelet stopped",
    "NetworkNotReady": "the node's network plugin is not ready",
    # controllers
    "FailedCreate": "a controller cannot create pods (quota, admission, security)",
    "FailedDelete": "a controller cannot delete pods",
    "ProgressDeadlineExceeded": "a rollout stopped making progress",
    "FailedRollback": "a rollback failed",
    "FailedGetScale": "an autoscaler cannot read its target",
    "FailedGetResourceMetric": "an autoscaler has no metrics",
    "FailedComputeMetricsReplicas": "an autoscaler cannot compute replicas",
    "FailedRescale": "an autoscaler cannot scale",
    "BackoffLimitExceeded": "a Job failed too often",
    "DeadlineExceeded": "a Job ran out of time",
    "FailedNeedsStart": "a CronJob missed its start",
    "FailedToUpdateEndpoint": "endpoints cannot be updated",
    "FailedToCreateEndpoint": "endpoints cannot be created",
    "SyncLoadBalancerFailed": "a load balancer cannot be set up",
    "CalculateExpectedPodCountFailed": "a PodDisruptionBudget cannot be evaluated",
    "NoPods": "a PodDisruptionBudget selects no pods",
    "FailedKillPod": "a pod cannot be killed",
    "FailedSync": "the kubelet cannot sync a pod",
    "FailedValidation": "an object failed validation",
    "FailedPostStartHook": "a postStart hook failed",
    "FailedPreStopHook": "a preStop hook failed",
    "NetworkFailed": "pod networking failed",
    "FailedCreatePodSandBox": "the pod's sandbox cannot be created (CNI)",
    "FailedPodSandBoxStatus": "the pod's sandbox status cannot be read",
    # Istio (istiod and the analyzers)
    "IST0101": "a referenced Istio object does not exist",
    "IST0104": "a gateway port is not exposed by its service",
    "IST0106": "an Istio object's schema is invalid",
    "IST0107": "a deployment's pods lack the sidecar",
    "IST0113": "mTLS settings conflict",
    "IST0128": "a DestinationRule uses an unknown subset",
    "IST0145": "a gateway conflicts with another",
    "RejectedConfig": "istiod rejected configuration",
}


def is_critical(reason: str, extra: Collection[str] = (), ignored: Collection[str] = ()) -> bool:
    """Whether an event reason is worth an incident: the catalogue plus `extra`, less `ignored`."""
    return reason not in ignored and (reason in CRITICAL_REASONS or reason in extra)
