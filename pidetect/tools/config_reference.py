"""docs/configuration.md, written from the code's own table of keys (`config.GROUPS`, `HELP`, the defaults of
`Config`, `allowed_text`): `python -m pidetect.tools.config_reference > docs/configuration.md`. A test compares
the file with this output, so the reference cannot drift from the code."""

from __future__ import annotations

import sys

from ..config import FIELDS, GROUPS, HELP, allowed_text, default_text

HEADER = """# Configuration reference

Every key of `/etc/pidetect/pidetect.toml` (flat: `threshold = 0.6`) is also an option of `pidetect run`
(`--threshold 0.6`; `--snapshots` / `--no-snapshots` for true/false); the command line wins over the file. A
typo in a key is an error naming the file, the line and the nearest key. Zones, object filters, masks and
notification targets are tables written after the flat keys: see [zones.md](zones.md) and
[notifications.md](notifications.md).

This page is generated from the code (`python -m pidetect.tools.config_reference > docs/configuration.md`);
`make test` fails when it is out of date.
"""


def type_name(key: str) -> str:
    kind = str(FIELDS[key].type)
    return {"str": "text", "int": "whole number", "float": "number", "bool": "true/false"}.get(
        kind, "list of text" if kind.startswith("Tuple") else kind)


def reference() -> str:
    lines = [HEADER]
    for title, keys in GROUPS:
        lines += [f"## {title[0].upper()}{title[1:]}", "", "| key | what it does | type | default | allowed |",
                  "|---|---|---|---|---|"]
        for key in keys:
            what = HELP[key].replace("|", "\\|")
            allowed = allowed_text(key).replace("|", "\\|")
            lines.append(f"| `{key}` | {what} | {type_name(key)} | `{default_text(key)}` | {allowed} |")
        lines.append("")
    return "\n".join(lines)


def main() -> int:
    sys.stdout.write(reference())
    return 0


if __name__ == "__main__":
    sys.exit(main())
