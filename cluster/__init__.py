"""KubeRay substrate: render RayService / RayJob / RayCluster manifests from the project's configs, validate them
against the KubeRay CRDs and the operator's rules, and drive a cluster through a typed KubeRay client.

    python -m cluster render|validate|deploy|status|submit-training|delete <env>
"""
