"""The ``alkappa`` command line: checks and small tools around the pipeline."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="alkappa", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("validate", help="check a campaign config (schema, structures, oracle)")
    p.add_argument("config", help="YAML config file")

    p = sub.add_parser("plugins", help="list the installed oracles and models")

    args = parser.parse_args(argv)
    if args.command == "validate":
        return _validate(args.config)
    if args.command == "plugins":
        from alkappa._plugins import GROUPS, available

        for group in GROUPS:
            print(f"{group}: {', '.join(available(group))}")
        return 0
    return 2


def _validate(path: str) -> int:
    from alkappa.config import ConfigError, load_config

    try:
        config = load_config(path)
    except ConfigError as exc:
        print(f"alkappa: invalid config: {exc}", file=sys.stderr)
        return 1
    print(
        f"{path}: valid ({len(config['materials'])} material(s): {', '.join(config['materials'])})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
