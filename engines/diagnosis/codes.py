"""Every finding code the diagnosis rules can report, with what it means in one line.

The coverage tables (`benchmarks/coverage.md`) map what Kubernetes and Istio report onto these codes; a test
fails when a rule reports a code that is not listed here, or a coverage row names one that does not exist."""

from __future__ import annotations

CODES: dict[str, str] = {
    # pods
    "POD_CRASHLOOP": "a container keeps exiting and the kubelet backs off restarting it",
    "POD_OOMKILLED": "a container was killed for exceeding its memory limit",
    "POD_RESTARTING": "a container restarted several times recently without being in back-off now",
    "POD_IMAGE_NOT_FOUND": "the image reference names an image or tag the registry does not have",
    "POD_IMAGE_PULL": "the image cannot be pulled (network, registry, rate limit)",
    "POD_PULL_SECRET_MISSING": "an imagePullSecret the pod names does not exist",  # nosec B105: a code, not a secret
    "POD_REGISTRY_AUTH": "the registry refused the pull credentials",
    "POD_CONFIG_MISSING": "a ConfigMap, Secret or key the pod mounts or reads does not exist",
    "POD_INSUFFICIENT_RESOURCES": "no node has the CPU, memory or pods the pod requests",
    "POD_NODE_AFFINITY_MISMATCH": "no node matches the pod's node selector or affinity",
    "POD_TAINT_NOT_TOLERATED": "every fitting node has a taint the pod does not tolerate",
    "POD_UNSCHEDULABLE": "the scheduler cannot place the pod for another reason (spread, ports, volumes)",
    "POD_PVC_UNBOUND": "the pod waits for a PersistentVolumeClaim that is not bound",
    "POD_PROBE_BAD_TARGET": "a probe checks a path or port the container does not serve",
    "POD_PROBE_AGGRESSIVE": "a probe's timing kills or unreadies a container that is only slow to answer",
    "POD_PROBE_FAILING": "a probe fails for a reason the evidence does not narrow further",
    "POD_STUCK_TERMINATING": "a pod marked for deletion long ago is still there (finalizers, lost node)",
    "POD_SCHEDULING_GATED": "a pod held by a scheduling gate nobody lifted (no event is ever emitted)",
    # workloads
    "DEPLOY_ROLLOUT_STUCK": "a Deployment rollout passed its progress deadline",
    "DEPLOY_PAUSED_WITH_CHANGES": "a paused Deployment holds back a pod template change (no event is emitted)",
    "DEPLOY_UNAVAILABLE": "a Deployment has fewer available replicas than it wants",
    "WORKLOAD_FAILED_CREATE": "a controller cannot create pods (quota, admission, limits, service account)",
    "STS_SERVICE_MISSING": "a StatefulSet's governing Service does not exist",
    "STS_SERVICE_NOT_HEADLESS": "a StatefulSet's governing Service is not headless",
    "STS_UNAVAILABLE": "a StatefulSet has fewer ready replicas than it wants",
    "DS_UNAVAILABLE": "a DaemonSet's pods are missing or unavailable on some nodes",
    "DS_MISSCHEDULED": "a DaemonSet runs pods on nodes it should not",
    "JOB_FAILED": "a Job failed (backoff limit or deadline reached)",
    "JOB_BACKOFF": "a Job's pods are failing and it is retrying",
    "CRONJOB_INVALID_SCHEDULE": "a CronJob's schedule never fires or cannot be parsed",
    "CRONJOB_SUSPENDED": "a CronJob is suspended",
    "CRONJOB_LAST_FAILED": "a CronJob's latest Job failed",
    # traffic
    "SVC_SELECTOR_NO_PODS": "a Service's selector matches no pod",
    "SVC_NO_READY_PODS": "a Service's pods exist but none is ready",
    "SVC_TARGET_PORT_MISMATCH": "a Service's targetPort is not a port its pods expose",
    "INGRESS_BACKEND_MISSING": "an Ingress routes to a Service that does not exist",
    "INGRESS_BACKEND_PORT_MISSING": "an Ingress routes to a port its Service does not have",
    "INGRESS_CLASS_MISSING": "an Ingress names an IngressClass that does not exist",
    "INGRESS_TLS_SECRET_MISSING": "an Ingress's TLS Secret does not exist",  # nosec B105: a code, not a secret
    "NETPOL_DENIES_SERVICE": "NetworkPolicies leave a Service's pods unreachable",
    "NETPOL_NO_PODS": "a NetworkPolicy selects no pod",
    # storage
    "PVC_STORAGECLASS_MISSING": "a claim names a StorageClass that does not exist",
    "PVC_NO_MATCHING_PV": "a claim has no volume to bind and nothing to provision one",
    "PVC_PROVISIONING_FAILED": "the provisioner failed to create a volume for a claim",
    "PV_FAILED": "a PersistentVolume is in the Failed phase",
    "PV_RELEASED": "a PersistentVolume was released by its claim and is not reusable as is",
    # nodes
    "NODE_NOT_READY": "a node is not Ready",
    "NODE_CORDONED": "a node is cordoned (unschedulable)",
    "NODE_DISK_PRESSURE": "a node reports disk pressure",
    "NODE_MEMORY_PRESSURE": "a node reports memory pressure",
    "NODE_PID_PRESSURE": "a node reports PID pressure",
    "NODE_REQUESTS_EXHAUSTED": "a node's allocatable CPU or memory is all requested",
    # autoscaling and disruption
    "HPA_TARGET_MISSING": "a HorizontalPodAutoscaler's target workload does not exist",
    "HPA_MISSING_REQUESTS": "an HPA scales on utilisation of a resource the pods do not request",
    "HPA_METRICS_UNAVAILABLE": "an HPA cannot read its metrics",
    "HPA_AT_MAX": "an HPA wants more replicas than its maximum",
    "PDB_BLOCKS_DISRUPTIONS": "a PodDisruptionBudget allows no disruption (drains will hang)",
    "PDB_NO_PODS": "a PodDisruptionBudget selects no pod",
    # istio (IST codes are istioctl analyze's)
    "IST0101": "ReferencedResourceNotFound: a gateway, host, subset or selector points at nothing",
    "IST0102": "NamespaceNotInjected: the namespace is not labelled for sidecar injection",
    "IST0103": "PodMissingProxy: a pod in an injected namespace has no sidecar",
    "IST0106": "SchemaValidationError: an Istio object is invalid",
    "IST0109": "ConflictingMeshGatewayVirtualServiceHosts: two VirtualServices claim the same host",
    "IST0113": "MTLSPolicyConflict: a DestinationRule's TLS mode contradicts the PeerAuthentication",
    "IST0118": "PortNameIsNotUnderNamingConvention: a Service port name hides its protocol from Istio",
    "IST0127": "NoMatchingWorkloadsFound: a policy's selector matches no workload",
    "IST0128": "NoServerCertificateVerificationDestinationLevel: TLS to a host without verifying its certificate",
    "ISTIO_SUBSET_NO_PODS": "a DestinationRule subset's labels match no pod of its host",
    "ISTIO_DR_CONFLICT": "two DestinationRules for the same host, only one applies",
}
