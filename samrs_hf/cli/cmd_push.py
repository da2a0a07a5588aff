"""``samrs push HUB_DIR --repo-id ORG/NAME``: upload a packaged dataset to the Hugging Face Hub."""

from __future__ import annotations


def register(subparsers) -> None:
    p = subparsers.add_parser("push", help="upload a packaged dataset folder to the Hub",
                              description="Create the dataset repo (if needed) and upload HUB_DIR resumably. "
                              "The token comes from HF_TOKEN or `hf auth login`; it is never printed.")
    p.add_argument("hub_dir", metavar="HUB_DIR", help="output of `samrs package` or `samrs convert-release`")
    p.add_argument("--repo-id", required=True, metavar="ORG/NAME")
    p.add_argument("--private", action="store_true", help="create the repo private")
    p.add_argument("--revision", default=None, help="branch to upload to (created if missing)")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..hub.repo import push

    url = push(args.hub_dir, args.repo_id, private=args.private, revision=args.revision)  # PushError: exit 1
    print(f"pushed {args.hub_dir} to {url}")
    return 0
