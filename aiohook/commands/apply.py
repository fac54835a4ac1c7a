"""`aiohook apply`: rewrite persistent domain definitions (virsh define) so the next start complies."""

from __future__ import annotations


def add_arguments(p) -> None:
    p.add_argument("--connect", "-c", help="libvirt URI (default: virsh's)")
    p.add_argument("--dry-run", action="store_true", help="print the diff, change nothing")
    p.add_argument("--all", action="store_true", help="every defined domain")
    p.add_argument("domain", nargs="*")


def run(args) -> int:
    from aiohook.admin.apply import apply

    return apply(args.domain, connect=args.connect, dry_run=args.dry_run, all_=args.all)
