"""The image line of each overlay: what a release writes, a promotion copies and a revert undoes."""

import argparse
import re
from pathlib import Path

from .. import cli

OVERLAYS = Path("deploy/overlays")

COMPONENT = r"[a-z0-9]+(?:[._-]+[a-z0-9]+)*"
DIGEST = r"sha256:[0-9a-f]{64}"
IMAGE_BY_DIGEST = re.compile(rf"{COMPONENT}(?::[0-9]+)?(?:/{COMPONENT})*@{DIGEST}")
IMAGE_LINE = re.compile(r"^(?P<key>[ \t]*(?:-[ \t]+)?image:[ \t]*)(?P<value>[^\s#]+)", re.MULTILINE)


def environments(overlays: Path = OVERLAYS) -> list[str]:
    """The environments, one overlay folder each: the list every other file must agree with."""
    return sorted(path.parent.name for path in overlays.glob("*/kustomization.yaml"))


def set_image(overlays: Path, env: str, image: str) -> list[Path]:
    """Write image into the image lines of one overlay, and nothing else; the files it changed."""
    if not IMAGE_BY_DIGEST.fullmatch(image):
        raise cli.UserError(f"{image}: not an image by digest, <repository>@sha256:<64 hex digits>")
    known = environments(overlays)
    if env not in known:
        raise cli.UserError(f"{env}: no such overlay in {overlays}; one of {', '.join(known)}")
    changed, found = [], 0
    for path in sorted((overlays / env).glob("*.yaml")):
        # Bytes in and out: line endings and everything around the image stay as they were.
        text = path.read_bytes().decode()
        new, count = IMAGE_LINE.subn(lambda line: line["key"] + image, text)
        found += count
        if new != text:
            path.write_bytes(new.encode())
            changed.append(path)
    if not found:
        raise cli.UserError(f"{overlays / env}: no image line to change")
    return changed


def image_of(overlays: Path, env: str) -> str:
    """The image an overlay deploys (what promotion copies to the next environment)."""
    images = {
        match["value"]
        for path in sorted((overlays / env).glob("*.yaml"))
        for match in IMAGE_LINE.finditer(path.read_text())
    }
    if len(images) != 1:
        raise cli.UserError(f"{overlays / env}: expected one image, found {len(images)}")
    return images.pop()


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="overlays", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    set_image_parser = commands.add_parser("set-image", help="write IMAGE into deploy/overlays/ENV")
    set_image_parser.add_argument("env", metavar="ENV")
    set_image_parser.add_argument("image", metavar="IMAGE", help="<repository>@sha256:<digest>")
    promote_parser = commands.add_parser("promote", help="copy the image of one overlay to another")
    promote_parser.add_argument("source", metavar="FROM")
    promote_parser.add_argument("target", metavar="TO")
    image_parser = commands.add_parser("image", help="print the image deploy/overlays/ENV deploys")
    image_parser.add_argument("env", metavar="ENV")
    args = parser.parse_args(argv)
    if args.command == "image":
        print(image_of(OVERLAYS, args.env))
        return
    env = args.env if args.command == "set-image" else args.target
    image = args.image if args.command == "set-image" else image_of(OVERLAYS, args.source)
    changed = set_image(OVERLAYS, env, image)
    print(f"{OVERLAYS / env}: {image}{'' if changed else ' (already)'}")


if __name__ == "__main__":
    cli.run(main)
