"""``samrs push HUB_DIR --repo-id ORG/NAME``: upload a packaged dataset to the Hugging Face Hub."""

from __future__ import annotations

from dataclasses import dataclass

from ..common.options import option


@dataclass(kw_only=True)
class PushArgs:
    hub_dir: str = option(positional=True, metavar="HUB_DIR",
                          help="output of `samrs package` or `samrs convert-release`")
    repo_id: str = option(metavar="ORG/NAME", help="the dataset repo")
    private: bool = option(False, help="create the repo private")
    revision: str | None = option(None, help="branch to upload to (created if missing)")


HELP = "upload a packaged dataset folder to the Hub"
DESCRIPTION = (
    "Create the dataset repo (if needed) and upload HUB_DIR resumably. The token comes from HF_TOKEN or "
    "`hf auth login`; it is never printed."
)
OPTIONS = PushArgs


def run(args: PushArgs) -> int:
    from ..hub.repo import push

    url = push(args.hub_dir, args.repo_id, private=args.private, revision=args.revision)  # PushError: exit 1
    print(f"pushed {args.hub_dir} to {url}")
    return 0
