"""The config file the installer writes: the example (deploy/pidetect.toml) with the chosen values set in place.

Why: the installer used to write its keys on top and the whole commented example below them, saying "uncomment to
change"; uncommenting `source` then gave tomllib's "Cannot overwrite a value (at line 22, column 23)". Here each
chosen key replaces its own commented line (`# source = "auto"` becomes `source = "/dev/video0"`), so every key
is in the file exactly once, where its explanation is.

    python -m pidetect.tools.installed_config deploy/pidetect.toml source=/dev/video0 display=mjpeg mjpeg_port=8081

Values are given as the user would type them on the command line (`--source …`) and written as TOML; the result
is checked by the config's own reader before it is printed.
"""

from __future__ import annotations

import re
import sys
import tempfile
from pathlib import Path
from typing import Dict, List

from ..config import FIELDS, build_config, coerce, load_file


def toml_value(key: str, text: str) -> str:
    """The value as TOML, typed as the key is (a list key takes A,B)."""
    import json

    value = coerce(key, text)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):  # as the command line writes it ("fb,mjpeg"): the config reads both forms
        return json.dumps(",".join(value), ensure_ascii=False)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    return repr(value)


def set_in_place(example: str, values: Dict[str, str], stamp: str = "") -> str:
    """The example with `key = value` in place of each chosen key's commented line (added before the first table
    when the example has none)."""
    lines: List[str] = example.splitlines()
    for key, text in values.items():
        if key not in FIELDS:
            raise SystemExit(f"installed_config: unknown key {key!r}")
        line = f"{key} = {toml_value(key, text)}"
        pattern = re.compile(rf"#\s*{re.escape(key)}\s*=")
        for index, existing in enumerate(lines):
            if pattern.match(existing):
                lines[index] = line
                break
        else:
            first_table = next((i for i, l in enumerate(lines) if re.match(r"#?\s*\[", l)), len(lines))
            lines.insert(first_table, line)
    head = [f"# Written by deploy/install.sh{stamp}: the keys set for this Pi are the uncommented lines; every other",
            "# line shows a key's default. Change a value in place (never add the key a second time)."]
    return "\n".join(head + lines) + "\n"


def main(argv: List[str]) -> int:
    if len(argv) < 1:
        print(__doc__, file=sys.stderr)
        return 2
    example = Path(argv[0]).read_text(encoding="utf-8")
    values = {}
    for pair in argv[1:]:
        key, sep, value = pair.partition("=")
        if not sep:
            print(f"installed_config: {pair!r} is not KEY=VALUE", file=sys.stderr)
            return 2
        values[key] = value
    text = set_in_place(example, values)
    with tempfile.NamedTemporaryFile("w", suffix=".toml", encoding="utf-8") as check:
        check.write(text)
        check.flush()
        load_file(Path(check.name))  # the daemon's own reader: a ConfigError here is the installer's bug
        build_config(Path(check.name), {}, path_required=True)
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
