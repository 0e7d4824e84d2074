"""python -m cluster {render,access,validate,deploy,status,submit-training,submit-precompute,delete} ENV

    render ENV             the environment's manifests as multi-document YAML on stdout
    access ENV --user U    the RBAC objects (for a cluster admin to apply) that let U run the commands below
    validate ENV           check them (KubeRay CRDs from KUBERAY_CRD_DIR, or --from-cluster)
    deploy ENV             validate against the cluster's CRDs, then server-side apply (the RayJobs excepted)
    status ENV             RayService, interactive RayCluster and the latest RayJobs
    submit-training ENV    start a training RayJob per model (or --model) for a pinned commit; --wait follows them
    submit-precompute ENV  start a precompute RayJob per prediction set (or --predictions); --wait follows them
    delete ENV             remove the RayService, the RayCluster and/or the RayJobs (training and precompute)
"""

from __future__ import annotations

import argparse
import datetime as dt
import subprocess
import sys

from cluster import access, environments, manifests
from cluster.client import KubeRayClient
from cluster.crd_schema import CrdSchemas
from cluster.errors import ClusterError, ManifestInvalid
from cluster.resources import RAY_CLUSTER, RAY_JOB, RAY_SERVICE
from cluster.status import RayJobStatus
from cluster.validation import validate_manifests
from recsys.errors import ConfigError, RecsysError


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        env = environments.load(args.env)
        return args.run(env, args)
    except ManifestInvalid as err:
        print(f"invalid manifests for {args.env}: {err}", file=sys.stderr)
        return 1
    except (ClusterError, RecsysError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


def _model_versions(args) -> dict[str, str]:
    versions = {}
    for pin in getattr(args, "model_version", None) or []:
        model, equals, version = pin.partition("=")
        if not equals or not model or not version:
            raise ConfigError(f"--model-version: expected MODEL=VERSION (e.g. destinations=20261129T204104Z-100c), "
                              f"got {pin!r}")
        versions[model] = version
    return versions


def _render(env, args) -> int:
    print(manifests.to_yaml(manifests.render(env, _commit(args), _model_versions(args))), end="")
    return 0


def _access(env, args) -> int:
    if not args.user and not args.group:
        raise ConfigError("access: name at least one --user or --group to grant")
    print(manifests.to_yaml(access.deployer_access(env, args.user, args.group)), end="")
    return 0


def _validate(env, args) -> int:
    objects = manifests.render(env, _commit(args), _model_versions(args))
    schemas = CrdSchemas.from_cluster(_client(args).api_client, objects) if args.from_cluster else \
        CrdSchemas.from_dir(args.crd_dir, args.monitoring_crd_dir)
    problems = validate_manifests(objects, schemas, env.kubernetes_version)
    if problems:
        raise ManifestInvalid(problems)
    print(f"{args.env}: {len(objects)} objects valid (CRDs from {schemas.source}, Kubernetes "
          f"{env.kubernetes_version})")
    return 0


def _deploy(env, args) -> int:
    kube = _client(args)
    objects = manifests.render(env, _commit(args), _model_versions(args))
    problems = validate_manifests(objects, CrdSchemas.from_cluster(kube.api_client, objects), env.kubernetes_version)
    if problems:
        raise ManifestInvalid(problems)
    generation = None
    for obj in objects:
        if obj["kind"] == RAY_JOB.kind:
            continue  # jobs run on demand: submit-training, submit-precompute
        applied = kube.apply(obj)
        if obj["kind"] == RAY_SERVICE.kind:
            generation = applied.get("metadata", {}).get("generation")
        print(f"applied {obj['kind']}/{obj['metadata']['name']}")
        if obj["kind"] == "Namespace" and kube.ensure_secret(env.ray_auth_secret, env.namespace, "auth_token"):
            print(f"created Secret/{env.ray_auth_secret} with a new Ray auth token")
    if args.wait:
        status = kube.wait(RAY_SERVICE, env.name, env.namespace, lambda s: s.live(generation), args.wait,
                           on_change=lambda s: print(f"RayService/{env.name}: {s.summary()}", flush=True))
        print(f"RayService/{env.name}: {status.summary()}")
    return 0


def _status(env, args) -> int:
    kube = _client(args)
    print(f"RayService/{env.name}: {kube.status(RAY_SERVICE, env.name, env.namespace).summary()}")
    interactive = f"{env.name}-interactive"
    print(f"RayCluster/{interactive}: {kube.status(RAY_CLUSTER, interactive, env.namespace).summary()}")
    jobs = kube.list(RAY_JOB, env.namespace, label_selector=f"app.kubernetes.io/instance={env.name}")
    for job in sorted(jobs, key=lambda j: j["metadata"].get("creationTimestamp", ""))[-5:]:
        print(f"RayJob/{job['metadata']['name']}: {RayJobStatus.parse(job).summary()}")
    return 0


def _submit_training(env, args) -> int:
    return _submit(env, args, "model", args.model, env.training.jobs, manifests.training_job, "training", "train")


def _submit_precompute(env, args) -> int:
    return _submit(env, args, "predictions", args.predictions, env.batch.jobs, manifests.precompute_job,
                   "precompute", "score")


def _submit(env, args, option: str, only: str | None, jobs_of_env: dict, render, kind: str, verb: str) -> int:
    """Start a RayJob per key of ``jobs_of_env`` (or ``only``) for a pinned commit; with --wait, follow them."""
    kube = _client(args)
    commit = _commit(args)
    stamp = dt.datetime.now(dt.UTC).strftime("%m%d%H%M")
    keys = [only] if only else list(jobs_of_env)
    unknown = sorted(set(keys) - set(jobs_of_env))
    if unknown:
        raise ClusterError(f"--{option} {unknown[0]}: not a {kind} job of {args.env}; known: {sorted(jobs_of_env)}")
    # The commit is in the job's labels and GIT_COMMIT; with it in the name too, names would pass KubeRay's limit.
    jobs = [render(env, key, commit, name=f"{env.name}-{verb}-{key}-{stamp}") for key in keys]
    problems = validate_manifests(jobs, CrdSchemas.from_cluster(kube.api_client, jobs), env.kubernetes_version)
    if problems:
        raise ManifestInvalid(problems)
    for key, job in zip(keys, jobs):
        kube.apply(job)
        print(f"submitted RayJob/{job['metadata']['name']} (code {commit[:7]}, {jobs_of_env[key].config})")
    if not args.wait:
        return 0
    failed = 0
    for job in jobs:
        name = job["metadata"]["name"]
        status = kube.wait(RAY_JOB, name, env.namespace, lambda s: s.finished, args.wait,
                           on_change=lambda s, name=name: print(f"RayJob/{name}: {s.summary()}", flush=True))
        failed += not status.succeeded_job
    return 1 if failed else 0


def _delete(env, args) -> int:
    kube = _client(args)

    def delete(kind, name: str) -> None:
        outcome = kube.delete(kind, name, env.namespace)
        print(f"deleted {kind.kind}/{name}" if outcome == "deleted" else f"{kind.kind}/{name}: {outcome}")

    if args.what in ("serving", "all"):
        delete(RAY_SERVICE, env.name)
    if args.what in ("interactive", "all"):
        delete(RAY_CLUSTER, f"{env.name}-interactive")
    if args.what in ("jobs", "all"):
        for job in kube.list(RAY_JOB, env.namespace, label_selector=f"app.kubernetes.io/instance={env.name}"):
            delete(RAY_JOB, job["metadata"]["name"])
    return 0


def _commit(args) -> str:
    if getattr(args, "commit", None):
        return args.commit
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, timeout=10,
                             cwd=environments.ROOT)
    except (OSError, subprocess.SubprocessError) as err:
        raise ClusterError("cannot tell the commit to pin (not a git checkout?); pass --commit") from err
    return out.stdout.strip()


def _client(args) -> KubeRayClient:
    return KubeRayClient.from_kubeconfig(args.context, args.kubeconfig)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m cluster", description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    def command(name: str, run, help_text: str, kube: bool = True, commit: bool = False, model: bool = False):
        sub = commands.add_parser(name, help=help_text)
        sub.add_argument("env", help="environment: dev, prod, or a path to an environment YAML")
        if kube:
            sub.add_argument("--kubeconfig", help="kubeconfig file (default: KUBECONFIG, else ~/.kube/config)")
            sub.add_argument("--context", help="kubeconfig context (default: the current one)")
        if commit:
            sub.add_argument("--commit", help="git commit the jobs run (default: HEAD)")
        if model:
            sub.add_argument("--model-version", action="append", default=[], metavar="MODEL=VERSION",
                             help="serve this version of MODEL instead of the config's (repeat for each model)")
        sub.set_defaults(run=run)
        return sub

    command("render", _render, "print the manifests", kube=False, commit=True, model=True)
    grant = command("access", _access, "print the least-privilege RBAC objects of the CLI's users", kube=False)
    grant.add_argument("--user", action="append", default=[], help="user to grant (repeat for more)")
    grant.add_argument("--group", action="append", default=[], help="group to grant (repeat for more)")
    validate = command("validate", _validate, "validate the manifests", commit=True, model=True)
    source = validate.add_mutually_exclusive_group()
    source.add_argument("--crd-dir", help="KubeRay CRDs directory (default: $KUBERAY_CRD_DIR)")
    validate.add_argument("--monitoring-crd-dir", help="PodMonitor CRD directory, where a PodMonitor is rendered "
                                                       "(default: $PROMETHEUS_OPERATOR_CRD_DIR; make crds fills it)")
    source.add_argument("--from-cluster", action="store_true", help="use the CRDs installed in the cluster")
    deploy = command("deploy", _deploy, "validate and apply", commit=True, model=True)
    deploy.add_argument("--wait", type=float, metavar="SECONDS",
                        help="wait until the applied RayService spec serves (reconciled, no pending cluster, apps RUNNING)")
    command("status", _status, "show the resources' status")
    submit = command("submit-training", _submit_training, "start a training RayJob per model", commit=True)
    submit.add_argument("--model", help="only this model's job (default: every model of the environment)")
    submit.add_argument("--wait", type=float, metavar="SECONDS", help="follow the jobs until they finish")
    precompute = command("submit-precompute", _submit_precompute, "start a precompute RayJob per prediction set",
                         commit=True)
    precompute.add_argument("--predictions", help="only this set's job (default: every set of the environment)")
    precompute.add_argument("--wait", type=float, metavar="SECONDS", help="follow the jobs until they finish")
    delete = command("delete", _delete, "delete resources")
    delete.add_argument("--what", choices=["serving", "interactive", "jobs", "all"], default="all")
    return parser


if __name__ == "__main__":
    sys.exit(main())
