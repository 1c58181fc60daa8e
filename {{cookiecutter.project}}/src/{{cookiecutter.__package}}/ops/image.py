"""`make image` and `make image-run`: build the service's image; run it as its rendered pod runs."""

import argparse
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from .. import cli
from .manifests import render
from .overlays import OVERLAYS

DOCKERFILE = Path("deploy/image/Dockerfile")
CONTEXT = Path("build/bento")
LOCK = Path("env/python/requirements.lock.txt")  # what `make bento` adds to the Bento
# The suffixes of Kubernetes quantities: milli, decimal and binary multiples.
SUFFIXES = {"m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}
SUFFIXES |= {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}
QUANTITY = re.compile(rf"(?P<number>\d+(?:\.\d*)?|\.\d+)(?P<suffix>{'|'.join(SUFFIXES)})?")

Object = dict[str, Any]


def engine(choice: str | None = None) -> str:
    """The container engine: CHOICE, else docker when its daemon answers, else podman."""
    if choice:
        if shutil.which(choice) is None:
            raise cli.UserError(f"{choice} not found on PATH")
        return choice
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "info"], capture_output=True, timeout=30).returncode == 0:
        return "docker"
    if shutil.which("podman"):
        return "podman"
    if docker:
        raise cli.UserError("docker does not answer: start its daemon, or install podman")
    raise cli.UserError("neither docker nor podman found: install one of them to build images")


def quantity(value: str | int | float) -> float:
    """A Kubernetes quantity as a plain number: 256Mi is 268435456, 250m is 0.25."""
    match = QUANTITY.fullmatch(str(value))
    if match is None:
        raise cli.UserError(f"{value!r} is not a Kubernetes quantity")
    return float(match["number"]) * SUFFIXES.get(match["suffix"] or "", 1)


def pod_of(objects: list[Object]) -> tuple[str, Object]:
    """The name and pod spec of the one workload: any kind of object with a pod template."""
    workloads = [obj for obj in objects if "template" in obj.get("spec", {})]
    if len(workloads) != 1:
        raise cli.UserError(f"expected one workload with a pod template, found {len(workloads)}")
    return workloads[0]["metadata"]["name"], workloads[0]["spec"]["template"]["spec"]


def tmpfs_options(pod: Object, context: Object, engine: str) -> list[str]:
    """Each emptyDir of the first container as a tmpfs of the same size at the same path."""
    # An emptyDir starts empty and writable by the pod's user. A tmpfs would take the mode (and,
    # in podman, the files) of the image's directory beneath it, so it is given to the user.
    owner = ["notmpcopyup", "U"] if engine == "podman" else []
    if engine != "podman" and "runAsUser" in context:
        group = context.get("fsGroup", context.get("runAsGroup", 0))
        owner = [f"uid={context['runAsUser']}", f"gid={group}"]
    volumes = {volume["name"]: volume for volume in pod.get("volumes", [])}
    options = []
    for mount in pod["containers"][0].get("volumeMounts", []):
        volume = volumes[mount["name"]]
        if "emptyDir" not in volume:
            raise cli.UserError(f"volume {mount['name']}: only emptyDir volumes run locally")
        size = volume["emptyDir"].get("sizeLimit")
        settings = ["rw", *([f"size={quantity(size):.0f}"] if size else []), *owner]
        options += ["--tmpfs", f"{mount['mountPath']}:{','.join(settings)}"]
    return options


def run_args(pod: Object, engine: str, port: int) -> tuple[list[str], list[str]]:
    """The engine's run options that reproduce the pod's first container, and its arguments."""
    container = pod["containers"][0]
    # The container's security settings win over the pod's, as the kubelet applies them.
    context = pod.get("securityContext", {}) | container.get("securityContext", {})
    options: list[str] = []
    if "runAsUser" in context:
        group = f":{context['runAsGroup']}" if "runAsGroup" in context else ""
        options += ["--user", f"{context['runAsUser']}{group}"]
    for extra in [context.get("fsGroup"), *context.get("supplementalGroups", [])]:
        options += ["--group-add", str(extra)] if extra is not None else []
    if context.get("readOnlyRootFilesystem"):
        # podman adds writable /tmp, /run and /var/tmp to a read-only container; a pod has none.
        options += ["--read-only", *(["--read-only-tmpfs=false"] if engine == "podman" else [])]
    capabilities = context.get("capabilities", {})
    options += [f"--cap-drop={cap}" for cap in capabilities.get("drop", [])]
    options += [f"--cap-add={cap}" for cap in capabilities.get("add", [])]
    if context.get("allowPrivilegeEscalation") is False:
        options += ["--security-opt", "no-new-privileges"]
    options += tmpfs_options(pod, context, engine)
    if container.get("envFrom"):
        raise cli.UserError("envFrom does not run locally: list the variables under env")
    for variable in container.get("env", []):
        # A value from a Secret or the downward API comes from the caller's environment instead.
        name = variable["name"]
        options += ["--env", f"{name}={variable['value']}" if "value" in variable else name]
    limits = container.get("resources", {}).get("limits", {})
    if "cpu" in limits:
        options += ["--cpus", f"{quantity(limits['cpu']):g}"]
    if "memory" in limits:
        options += ["--memory", f"{quantity(limits['memory']):.0f}"]
    if ports := container.get("ports"):
        options += ["--publish", f"127.0.0.1:{port}:{ports[0]['containerPort']}"]
    if "terminationGracePeriodSeconds" in pod:
        options += ["--stop-timeout", str(pod["terminationGracePeriodSeconds"])]
    if "workingDir" in container:
        options += ["--workdir", container["workingDir"]]
    command = container.get("command", [])
    if command:
        options += ["--entrypoint", command[0]]
    return options, [*command[1:], *container.get("args", [])]


def run_command(env: str, tag: str, engine: str, port: int, root: Path = Path()) -> list[str]:
    """The whole command that runs TAG as deploy/overlays/ENV renders its workload."""
    name, pod = pod_of(render(OVERLAYS / env, root))
    options, arguments = run_args(pod, engine, port)
    run = [engine, "run", "--rm", "--pull=never", f"--name={name}-{env}"]
    return [*run, *options, tag, *arguments]


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="image", description=__doc__)
    parser.add_argument("--engine", help="docker or podman (default: the one that answers)")
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("build", help="build the Dockerfile from the Bento context")
    build.add_argument("--tag", required=True)
    build.add_argument("--dockerfile", type=Path, default=DOCKERFILE)
    build.add_argument("--context", type=Path, default=CONTEXT)
    build.add_argument("--options", default="", help="more build options, e.g. '--pull=never'")
    run = commands.add_parser("run", help="run the image as deploy/overlays/ENV runs it")
    run.add_argument("--tag", required=True)
    run.add_argument("--env", default="staging", metavar="ENV")
    run.add_argument("--port", type=int, default=3000, help="the host port of the service")
    run.add_argument("--print", action="store_true", help="print the command instead")
    args = parser.parse_args(argv)
    if args.command == "build":
        if not (args.context / LOCK).is_file():
            raise cli.UserError(f"{args.context} is no image context: run `make bento` first")
        command = [engine(args.engine), "build", "--file", str(args.dockerfile), "--tag", args.tag]
        command += [*shlex.split(args.options), str(args.context)]
    else:
        command = run_command(args.env, args.tag, engine(args.engine), args.port)
        if args.print:
            print(shlex.join(command))
            return
    print(shlex.join(command), file=sys.stderr)
    os.execvp(command[0], command)


if __name__ == "__main__":
    cli.run(main)
